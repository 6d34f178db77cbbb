//! No library pulls in what only binaries need: argument parsing, progress bars, configuration layering,
//! log output setup and the allocator belong to z3-cli.
//!
//! The closure of each workspace package's normal dependencies (not dev, not build) is read from
//! `cargo metadata`'s resolve graph. Every package is a library for this check except the ones named in
//! [`NOT_LIBRARIES`], so a new crate is covered the day it joins the workspace. The resolve graph unifies
//! features over the whole workspace, so an optional dependency that only z3-cli turns on would count
//! for the libraries too: the check errs on the strict side.

use std::collections::{BTreeMap, VecDeque};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Crates no library may depend on, directly or through others.
const FORBIDDEN: &[&str] = &[
    "clap",
    "indicatif",
    "figment",
    "tracing-subscriber",
    "tikv-jemallocator",
];

/// The workspace packages that are not libraries: the command line (whose library sets the global
/// allocator and parses flags), the task runner and the examples.
const NOT_LIBRARIES: &[&str] = &["z3-cli", "xtask", "z3-examples"];

/// Runs `cargo metadata` in the workspace and fails naming each forbidden dependency and how it came in.
pub(crate) fn check(cargo: &mut Command) -> Result<()> {
    let output = cargo
        .args(["metadata", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata's output")?;
    let offences = offences(&metadata)?;
    if !offences.is_empty() {
        bail!(
            "libraries depend on crates only binaries may use:\n  {}",
            offences.join("\n  ")
        );
    }
    Ok(())
}

/// One line per (library, forbidden crate): the dependency path from the one to the other.
fn offences(metadata: &Value) -> Result<Vec<String>> {
    let name_of: BTreeMap<&str, &str> = array(metadata, "packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let mut normal_deps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in array(&metadata["resolve"], "nodes")? {
        let id = node["id"]
            .as_str()
            .context("a resolve node without an id")?;
        let deps = node["deps"].as_array().map_or(&[][..], Vec::as_slice);
        let normal = deps
            .iter()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
            })
            .filter_map(|dep| dep["pkg"].as_str());
        normal_deps.insert(id, normal.collect());
    }
    let mut offences = Vec::new();
    for member in array(metadata, "workspace_members")? {
        let root = member
            .as_str()
            .context("a workspace member that is not a string")?;
        let root_name = name_of.get(root).copied().unwrap_or(root);
        if NOT_LIBRARIES.contains(&root_name) {
            continue;
        }
        // Breadth first, remembering how each package was reached, so the report shows a shortest path.
        let mut reached_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([root]);
        while let Some(id) = queue.pop_front() {
            for &dep in normal_deps.get(id).map_or(&[][..], Vec::as_slice) {
                if dep != root && !reached_from.contains_key(dep) {
                    reached_from.insert(dep, id);
                    queue.push_back(dep);
                }
            }
        }
        for &id in reached_from.keys() {
            let name = name_of.get(id).copied().unwrap_or(id);
            if FORBIDDEN.contains(&name) {
                let mut path = vec![name];
                let mut at = id;
                while let Some(&from) = reached_from.get(at) {
                    path.push(name_of.get(from).copied().unwrap_or(from));
                    at = from;
                }
                path.reverse();
                offences.push(format!("{root_name}: {}", path.join(" -> ")));
            }
        }
    }
    Ok(offences)
}

fn array<'a>(value: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    value[key]
        .as_array()
        .with_context(|| format!("cargo metadata's output has no `{key}` array"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::offences;

    /// A resolve graph: `lib` → `mid` → `clap`, `lib` → `tracing-subscriber` as a dev-dependency only,
    /// `z3-cli` → `clap` directly.
    fn metadata(mid_kind: &Value) -> Value {
        let package = |name: &str| json!({ "id": format!("{name}-id"), "name": name });
        let dep = |name: &str, kind: &Value| json!({ "pkg": format!("{name}-id"), "dep_kinds": [{ "kind": kind, "target": null }] });
        let packages = ["lib", "mid", "clap", "tracing-subscriber", "z3-cli"].map(package);
        json!({
            "packages": packages,
            "workspace_members": ["lib-id", "z3-cli-id"],
            "resolve": { "nodes": [
                { "id": "lib-id", "deps": [dep("mid", mid_kind), dep("tracing-subscriber", &json!("dev"))] },
                { "id": "mid-id", "deps": [dep("clap", &Value::Null)] },
                { "id": "clap-id", "deps": [] },
                { "id": "tracing-subscriber-id", "deps": [] },
                { "id": "z3-cli-id", "deps": [dep("clap", &Value::Null)] },
            ] },
        })
    }

    #[test]
    fn a_library_reaching_a_forbidden_crate_is_named_with_the_path() {
        assert_eq!(
            offences(&metadata(&Value::Null)).unwrap(),
            ["lib: lib -> mid -> clap"]
        );
    }

    #[test]
    fn dev_dependencies_and_the_binaries_crate_pass() {
        assert!(offences(&metadata(&json!("dev"))).unwrap().is_empty());
    }
}

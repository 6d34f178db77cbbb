//! docs/configuration.md is generated from the code: the keys from `config::KEYS` (with
//! defaults and meanings from `src/config/keys.tsv`, which a unit test holds to the keys and
//! defaults of the code), whether an `[fs:…]` section may set them from `config::SECTION_KEYS`,
//! and every flag of every binary from the clap definitions. The test fails when the doc and
//! the code disagree; `Z3_BLESS=1 cargo test -p z3-cli --test it reference` rewrites the doc.

use std::fmt::Write as _;

use clap::CommandFactory;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");

/// One table cell: `|` escaped, newlines folded.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn flags(out: &mut String, title: &str, command: &clap::Command) {
    let args: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .filter(|a| !a.is_hide_set())
        .collect();
    if args.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "\n### `{title}`\n\n| flag | default | environment | meaning |\n|---|---|---|---|\n"
    );
    for arg in args {
        let name = match (arg.get_long(), arg.get_short()) {
            (Some(long), Some(short)) => format!("`-{short}`, `--{long}`"),
            (Some(long), None) => format!("`--{long}`"),
            (None, Some(short)) => format!("`-{short}`"),
            (None, None) => format!(
                "`{}`",
                arg.get_value_names()
                    .and_then(|v| v.first())
                    .map_or_else(|| arg.get_id().to_string(), ToString::to_string)
            ),
        };
        let aliases = arg
            .get_visible_aliases()
            .map(|a| {
                a.iter()
                    .map(|alias| format!(", `--{alias}`"))
                    .collect::<Vec<_>>()
                    .concat()
            })
            .unwrap_or_default();
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ");
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let _ = writeln!(
            out,
            "| {name}{aliases} | {default} | {env} | {} |",
            cell(&help)
        );
    }
}

fn render() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the code by `tests/it/reference.rs` (`Z3_BLESS=1 cargo test -p z3-cli \
         --test it reference` rewrites it; CI fails when it is stale). How the sources combine: \
         operations.md, \"Configuration\".\n\n\
         ## Keys\n\n\
         Each key is read from the `[main]` section of `/etc/z3_backup/z3.conf` (case-insensitive), \
         from the environment variable of the same upper-case name, and, where the third column \
         says so, from an `[fs:<dataset>]` section.\n\n\
         | key | default | `[fs:…]` | meaning |\n|---|---|---|---|\n",
    );
    let table = include_str!("../../src/config/keys.tsv");
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let mut cells = line.split('\t');
        let (key, default, meaning) = (
            cells.next().unwrap(),
            cells.next().unwrap(),
            cells.next().unwrap(),
        );
        let section = if z3_cli::config::SECTION_KEYS.contains(&key) {
            "yes"
        } else {
            ""
        };
        let _ = writeln!(out, "| `{key}` | {default} | {section} | {meaning} |");
    }
    out.push_str("\n## Flags\n");
    let z3 = z3_cli::args::Cli::command();
    flags(&mut out, "z3 (every command)", &z3);
    for sub in z3.get_subcommands() {
        flags(&mut out, &format!("z3 {}", sub.get_name()), sub);
    }
    for command in [
        z3_cli::transfer::PputArgs::command(),
        z3_cli::transfer::GetArgs::command(),
        z3_cli::sync::SyncArgs::command(),
        z3_cli::cleanup::CleanupArgs::command(),
    ] {
        flags(&mut out, command.get_name(), &command);
    }
    out
}

#[test]
fn the_configuration_reference_is_generated_from_the_code() {
    let want = render();
    if std::env::var_os("Z3_BLESS").is_some() {
        std::fs::write(DOC, &want).unwrap();
    }
    let have = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        have == want,
        "docs/configuration.md is stale: run `Z3_BLESS=1 cargo test -p z3-cli --test it reference`"
    );
}

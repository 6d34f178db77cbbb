//! Writes the man pages and shell completions of the five binaries from their clap
//! definitions, for the Debian package (`cargo xtask dist` runs it):
//! `cargo run -p z3-cli --example dist_assets -- OUTDIR` makes `OUTDIR/man/*.1` (one per binary
//! and one per `z3` subcommand: `z3-backup.1`, …) and `OUTDIR/{bash,zsh,fish}/`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: dist_assets OUTDIR")?,
    );
    let commands = [
        z3_cli::args::Cli::command(),
        z3_cli::transfer::PputArgs::command(),
        z3_cli::transfer::GetArgs::command(),
        z3_cli::sync::SyncArgs::command(),
        z3_cli::cleanup::CleanupArgs::command(),
    ];
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    for command in &commands {
        // One page for the binary and, for z3, one per subcommand (`man z3-backup`).
        clap_mangen::generate_to(command.clone(), &man)
            .with_context(|| format!("writing the man pages of {}", command.get_name()))?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let dir = out.join(shell.to_string());
        std::fs::create_dir_all(&dir)?;
        for command in &commands {
            let mut command = command.clone();
            let name = command.get_name().to_owned();
            clap_complete::generate_to(shell, &mut command, name, &dir)?;
        }
    }
    Ok(())
}

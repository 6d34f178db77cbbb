//! The `z3_ssh_sync` binary: push or pull snapshots over SSH. See [`z3_cli::sync`].

use std::process::ExitCode;

use clap::Parser;
use z3_cli::engine::Console;
use z3_cli::sync::SyncArgs;

fn main() -> ExitCode {
    let args = match SyncArgs::try_parse() {
        Ok(args) => args,
        Err(err) => return z3_cli::exit::clap_exit(&err),
    };
    let verbose = args.verbose;
    z3_cli::exit::run_main("z3_ssh_sync", verbose, async move {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        let mut console = Console {
            out: &mut out,
            err: &mut err,
        };
        z3_cli::sync::main(args, &mut console).await
    })
}

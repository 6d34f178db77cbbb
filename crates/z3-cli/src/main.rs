//! The `z3` binary: parse flags, then run through [`z3_cli::exit::run_main`].

use std::process::ExitCode;

use clap::Parser;
use z3_cli::args::Cli;
use z3_cli::engine::Console;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return z3_cli::exit::clap_exit(&err),
    };
    let verbose = cli.verbose;
    z3_cli::exit::run_main("z3", verbose, async move {
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        let mut console = Console {
            out: &mut stdout,
            err: &mut stderr,
        };
        z3_cli::run(cli, &mut console).await
    })
}

//! The `z3` binary: parse flags, then run through [`z3_cli::exit::run_main`].

use std::process::ExitCode;

use clap::Parser;
use z3_cli::args::{Cli, Command};
use z3_cli::engine::Console;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return z3_cli::exit::clap_exit(&err),
    };
    let verbose = cli.verbose;
    let status = matches!(cli.command, Command::Status(_));
    z3_cli::exit::run_main("z3", verbose, async move {
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        let mut console = Console {
            out: &mut stdout,
            err: &mut stderr,
        };
        let result = z3_cli::run(cli, &mut console).await;
        // `z3 status | head`: only status may take a closed stdout for success.
        if status {
            z3_cli::exit::closed_stdout_is_success(result)
        } else {
            result
        }
    })
}

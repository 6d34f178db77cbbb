//! The `z3_mp_cleanup` binary: abort stale multipart uploads. See [`z3_cli::cleanup`].

use std::process::ExitCode;

use clap::Parser;
use z3_cli::cleanup::{CleanupArgs, main as cleanup};

fn main() -> ExitCode {
    let args = match CleanupArgs::try_parse() {
        Ok(args) => args,
        Err(err) => return z3_cli::exit::clap_exit(&err),
    };
    z3_cli::exit::run_main("z3_mp_cleanup", 0, async move {
        let mut stdout = std::io::stdout();
        cleanup(args, &mut stdout).await
    })
}

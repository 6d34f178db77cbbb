//! The `pput` binary: standard input to one S3 object. See [`z3_cli::transfer::pput`].

use std::process::ExitCode;

use clap::Parser;
use z3_cli::transfer::{PputArgs, pput};

fn main() -> ExitCode {
    let args = match PputArgs::try_parse() {
        Ok(args) => args,
        Err(err) => return z3_cli::exit::clap_exit(&err),
    };
    z3_cli::exit::run_main("pput", 0, async move {
        let mut stdout = std::io::stdout();
        pput(args, &mut stdout).await
    })
}

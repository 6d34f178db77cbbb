//! The `z3_get` binary: one S3 object to standard output. See [`z3_cli::transfer::get`].

use std::process::ExitCode;

use clap::Parser;
use z3_cli::transfer::{GetArgs, get};

fn main() -> ExitCode {
    let args = match GetArgs::try_parse() {
        Ok(args) => args,
        Err(err) => return z3_cli::exit::clap_exit(&err),
    };
    z3_cli::exit::run_main("z3_get", 0, get(args))
}

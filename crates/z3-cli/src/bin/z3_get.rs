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

/// jemalloc for every z3 binary (set here, not in a library, so that embedders keep their own
/// allocator). Downloads hand the HTTP client's receive buffers straight to the output without
/// copying; glibc's malloc gives those multi-100-KiB buffers back to the kernel as soon as a
/// range is written and faults them in again for the next one (a fifth of `z3_get`'s CPU in
/// `perf`). jemalloc keeps freed pages for reuse (10 s decay).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

/// jemalloc for every z3 binary (set here, not in a library, so that embedders keep their own
/// allocator). Downloads hand the HTTP client's receive buffers straight to the output without
/// copying; glibc's malloc gives those multi-100-KiB buffers back to the kernel as soon as a
/// range is written and faults them in again for the next one (a fifth of `z3_get`'s CPU in
/// `perf`). jemalloc keeps freed pages for reuse (10 s decay).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

/// jemalloc for every z3 binary (set here, not in a library, so that embedders keep their own
/// allocator). Downloads hand the HTTP client's receive buffers straight to the output without
/// copying; glibc's malloc gives those multi-100-KiB buffers back to the kernel as soon as a
/// range is written and faults them in again for the next one (a fifth of `z3_get`'s CPU in
/// `perf`). jemalloc keeps freed pages for reuse (10 s decay).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

//! The `z3` binary: parse flags, then run through [`z3_cli::exit::run_main`].

use std::process::ExitCode;

use clap::Parser;
use z3_cli::args::{Cli, Command};
use z3_cli::engine::Console;

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|arg| arg == "--check");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `status --check` answers bad flags as a monitoring plugin does: UNKNOWN, exit 3.
        Err(err) if check && err.use_stderr() => {
            let text = err.to_string();
            println!(
                "{}",
                z3_core::check::unknown(text.trim_start_matches("error: ")).line
            );
            return ExitCode::from(z3_core::check::State::Unknown.code());
        }
        Err(err) => return z3_cli::exit::clap_exit(&err),
    };
    let verbose = cli.verbose;
    if matches!(&cli.command, Command::Status(args) if args.check) {
        return z3_cli::exit::run_main("z3", verbose, async move {
            let mut console = Console {
                out: &mut std::io::stdout(),
                err: &mut std::io::stderr(),
            };
            Ok(z3_cli::check(&cli, &mut console).await?)
        });
    }
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

/// jemalloc for every z3 binary (set here, not in a library, so that embedders keep their own
/// allocator). Downloads hand the HTTP client's receive buffers straight to the output without
/// copying; glibc's malloc gives those multi-100-KiB buffers back to the kernel as soon as a
/// range is written and faults them in again for the next one (a fifth of `z3_get`'s CPU in
/// `perf`). jemalloc keeps freed pages for reuse (10 s decay).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

//! The `z3` binary: parse flags, set up logging and the runtime, run, map errors to exit codes.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use z3_cli::args::Cli;
use z3_cli::engine::Console;
use z3_cli::exit::{ExitStatus, classify};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitStatus::Usage.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("z3: error: cannot start the async runtime: {err}");
            return ExitStatus::Error.into();
        }
    };
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut console = Console {
        out: &mut stdout,
        err: &mut stderr,
    };
    let result = runtime.block_on(z3_cli::run(cli, &mut console));
    let _ = std::io::stdout().flush();
    match result {
        Ok(status) => status.into(),
        Err(err) if is_broken_pipe(&err) => ExitStatus::Success.into(),
        Err(err) => {
            eprintln!("z3: error: {}", one_line(&err));
            classify(&err).into()
        }
    }
}

/// The error chain on one line: zfs splits some messages over two lines
/// ("has been modified\nsince most recent snapshot").
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `z3 status | head` closing the pipe early is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) && err.chain().count() == 1
}

fn init_logging(verbose: u8) {
    // The AWS SDK warns about every credential or region source it tries; only -v shows that.
    let default = match verbose {
        0 => "warn,aws_config=error,aws_smithy_runtime=error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

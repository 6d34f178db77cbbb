//! Exit codes and how an error chain maps to one. Documented in `z3 --help` and docs/operations.md.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// The distinct exit statuses of `z3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// Done (also when there was nothing left to do).
    Success = 0,
    /// A runtime failure: S3, zfs, a failed pipeline stage, nothing matching the snapshot prefix.
    Error = 1,
    /// Bad flags, invalid names, a missing or malformed configuration.
    Usage = 2,
    /// A broken backup chain, or an object whose bytes or seal do not match what was backed up
    /// (refused by backup and restore; reported by verify).
    Integrity = 3,
    /// Another backup of the same dataset holds the lock.
    Locked = 4,
}

impl ExitStatus {
    /// The more serious of two outcomes, for commands that run once per dataset (`backup
    /// --all`): an integrity problem (3) before a held lock (4), a usage error (2), an error (1)
    /// and success (0).
    #[must_use]
    pub fn worst(self, other: Self) -> Self {
        let rank = |status: Self| match status {
            Self::Success => 0,
            Self::Error => 1,
            Self::Usage => 2,
            Self::Locked => 3,
            Self::Integrity => 4,
        };
        std::cmp::max_by_key(self, other, |status| rank(*status))
    }

    /// A few words for a summary line.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Success => "ok",
            Self::Error => "failed",
            Self::Usage => "usage or configuration error",
            Self::Integrity => "integrity problem",
            Self::Locked => "locked by another backup",
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}

/// A usage problem found after argument parsing (e.g. an unknown compressor in the config file);
/// the engine's own refusals of bad input are the same type.
pub use z3_engine::UsageError;

/// Picks the exit status for an error: the engine's [`z3_engine::Error`] by its kind, the
/// command line's own errors (configuration, names, `z3_ssh_sync`'s) by their types.
#[must_use]
pub fn classify(err: &anyhow::Error) -> ExitStatus {
    for cause in err.chain() {
        if let Some(engine) = cause.downcast_ref::<z3_engine::Error>() {
            return match engine {
                z3_engine::Error::InvalidInput(_) => ExitStatus::Usage,
                z3_engine::Error::Integrity(_) => ExitStatus::Integrity,
                z3_engine::Error::Locked(_) => ExitStatus::Locked,
                // Interrupted runs exit 128 + signal before they get here (`run_main`).
                _ => ExitStatus::Error,
            };
        }
        if let Some(plan) = cause.downcast_ref::<z3_core::PlanError>() {
            return if plan.is_integrity() {
                ExitStatus::Integrity
            } else {
                ExitStatus::Error
            };
        }
        if cause.is::<crate::config::ConfigError>()
            || cause.is::<z3_core::NameError>()
            || cause.is::<UsageError>()
        {
            return ExitStatus::Usage;
        }
    }
    ExitStatus::Error
}

/// What every binary does after parsing flags: logging, a runtime, the future, and the error on one line.
///
/// The future yields an [`ExitStatus`] or `()` (success); an error is printed as
/// `<program>: error: <chain>` on one line and mapped by [`classify`].
pub fn run_main<T, F>(program: &'static str, verbose: u8, future: F) -> ExitCode
where
    T: Into<ExitStatusOrUnit>,
    F: Future<Output = anyhow::Result<T>>,
{
    init_logging(verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say(&format!(
                "{program}: error: cannot start the async runtime: {err}"
            ));
            return ExitStatus::Error.into();
        }
    };
    let result = runtime.block_on(async {
        if let Err(err) = crate::interrupt::listen(program, crate::interrupt::global().clone()) {
            tracing::warn!(error = %err, "cannot install SIGINT/SIGTERM handlers");
        }
        future.await
    });
    let _ = std::io::stdout().flush();
    let interrupted = crate::interrupt::global().signal();
    match (result, interrupted) {
        (Err(err), Some(signal)) => {
            // Whatever failed, it failed because it was asked to stop, after cleaning up.
            say(&format!(
                "{program}: interrupted by {}: {}",
                crate::interrupt::signal_name(signal),
                one_line(&err)
            ));
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
        }
        (Ok(value), _) => ExitCode::from(value.into().0),
        (Err(err), None) if is_broken_stdout(&err) => {
            // The command could not report what it did (or did not finish it): never success.
            // Only `z3 status` treats a closed stdout as done, before it gets here
            // ([`closed_stdout_is_success`]).
            say(&format!(
                "{program}: error: standard output was closed before the results were written: {}",
                one_line(&err)
            ));
            ExitStatus::Error.into()
        }
        (Err(err), None) => {
            say(&format!("{program}: error: {}", one_line(&err)));
            classify(&err).into()
        }
    }
}

/// For `z3 status` only: `z3 status | head` closing the pipe early is not an error. Every
/// other command that could not write its results fails ([`run_main`] exits 1).
///
/// # Errors
/// `result`'s error, unless it is a bare write error to a closed stdout.
pub fn closed_stdout_is_success(result: anyhow::Result<ExitStatus>) -> anyhow::Result<ExitStatus> {
    match result {
        Err(err) if is_broken_stdout(&err) => Ok(ExitStatus::Success),
        other => other,
    }
}

/// A command's success value: an explicit status, or `()` for plain success.
#[derive(Debug)]
pub struct ExitStatusOrUnit(u8);

impl From<ExitStatus> for ExitStatusOrUnit {
    fn from(status: ExitStatus) -> Self {
        Self(status as u8)
    }
}

impl From<()> for ExitStatusOrUnit {
    fn from((): ()) -> Self {
        Self(ExitStatus::Success as u8)
    }
}

/// `status --check` exits with the monitoring-plugin state (0 OK … 3 UNKNOWN).
impl From<z3_core::check::State> for ExitStatusOrUnit {
    fn from(state: z3_core::check::State) -> Self {
        Self(state.code())
    }
}

/// Prints a clap error or help text and returns its exit status (2 for errors, 0 for help).
#[must_use]
pub fn clap_exit(err: &clap::Error) -> ExitCode {
    let printed = err.print();
    if err.use_stderr() {
        ExitStatus::Usage.into()
    } else if printed.is_err() {
        // `--help` or `--version` that could not be written did not do what was asked.
        ExitStatus::Error.into()
    } else {
        ExitStatus::Success.into()
    }
}

/// Writes a line to stderr; a closed stderr must not turn an exit status into a panic.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
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

/// A bare write error to a closed stdout (no context added): the commands write their results
/// with plain `writeln!` and `?`.
fn is_broken_stdout(err: &anyhow::Error) -> bool {
    err.chain().count() == 1
        && err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_worst_status_is_integrity_then_lock_then_usage_then_error() {
        use ExitStatus::{Error, Integrity, Locked, Success, Usage};
        let order = [Success, Error, Usage, Locked, Integrity];
        for (i, &a) in order.iter().enumerate() {
            for (j, &b) in order.iter().enumerate() {
                assert_eq!(a.worst(b), order[i.max(j)], "{a:?} {b:?}");
            }
        }
    }

    use super::*;
    use anyhow::Context;

    #[test]
    fn chain_decides_the_status() {
        let broken = anyhow::Error::new(z3_core::PlanError::Broken {
            name: "pool/fs@snap_5".into(),
            reason: z3_core::Reason::ParentBroken,
        })
        .context("cannot back up");
        assert_eq!(classify(&broken), ExitStatus::Integrity);
        let name = z3_core::DatasetName::new("pool/bad!").unwrap_err();
        assert_eq!(classify(&anyhow::Error::new(name)), ExitStatus::Usage);
        let nothing = anyhow::Error::new(z3_core::PlanError::NothingToBackup {
            dataset: "pool/fs".into(),
            snapshot_prefix: "x".into(),
        });
        assert_eq!(classify(&nothing), ExitStatus::Error);
        let io: anyhow::Result<()> = Err(std::io::Error::other("boom")).context("ctx");
        assert_eq!(classify(&io.unwrap_err()), ExitStatus::Error);
    }

    fn closed_stdout() -> anyhow::Error {
        anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }

    #[test]
    fn a_closed_stdout_fails_every_command_but_status() {
        // Was ExitCode::SUCCESS for every program before: a verify or backup whose results
        // went nowhere looked done.
        let code = run_main("pput", 0, async { Err::<(), _>(closed_stdout()) });
        assert_eq!(code, ExitCode::from(1));
        let status = closed_stdout_is_success(Err(closed_stdout())).unwrap();
        assert_eq!(status, ExitStatus::Success);
        let other = closed_stdout_is_success(Err(anyhow::anyhow!("boom")));
        assert!(other.is_err());
        let with_context: anyhow::Result<ExitStatus> =
            Err(closed_stdout()).context("cannot write to standard output");
        assert!(closed_stdout_is_success(with_context).is_err());
    }
}

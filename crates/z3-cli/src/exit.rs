//! Exit codes and how an error chain maps to one. Documented in `z3 --help` and docs/operations.md.

use std::process::ExitCode;

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
    /// A broken backup chain was found (and refused, for backup and restore).
    Integrity = 3,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}

/// A usage problem found after argument parsing (e.g. an unknown compressor in the config file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Picks the exit status for an error by looking at every error in its chain.
#[must_use]
pub fn classify(err: &anyhow::Error) -> ExitStatus {
    for cause in err.chain() {
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

#[cfg(test)]
mod tests {
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
}

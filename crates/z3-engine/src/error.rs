//! The engine's error: which kind of failure, and the whole story on one line.

use std::fmt;

/// Why a command failed. The z3 binaries map each kind to an exit status (in brackets); an
/// embedder decides what each means to it. More kinds may come.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Bad input the caller can fix: an unusable key file, a missing age identity for an
    /// encrypted backup, a name ZFS would refuse \[2\].
    InvalidInput(Detail),
    /// The backups are not what they must be, and the command refused to go on: a broken or
    /// replaced chain, an object whose seal or digest does not match, a key another writer
    /// changed since it was listed, a snapshot of the same name that is another one \[3\].
    Integrity(Detail),
    /// Another run holds the dataset's backup lock \[4\].
    Locked(Detail),
    /// The [`Interrupt`](crate::Interrupt) fired: the command stopped after cleaning up
    /// (uploads aborted, `zfs receive` killed before it committed) \[128 + signal\].
    Cancelled {
        /// The number the interrupt was triggered with.
        signal: i32,
        /// What was stopped.
        detail: Detail,
    },
    /// Anything else: S3, `zfs`, a pipeline stage, nothing to back up \[1\].
    Failed(Detail),
}

impl Error {
    /// The exit code the z3 binaries give this error: 2 invalid input, 3 integrity, 4 locked,
    /// 128 + signal when cancelled, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InvalidInput(_) => 2,
            Self::Integrity(_) => 3,
            Self::Locked(_) => 4,
            Self::Cancelled { signal, .. } => u8::try_from(128 + signal).unwrap_or(1),
            Self::Failed(_) => 1,
        }
    }

    /// What happened, whatever the kind.
    #[must_use]
    pub fn detail(&self) -> &Detail {
        match self {
            Self::InvalidInput(d)
            | Self::Integrity(d)
            | Self::Locked(d)
            | Self::Failed(d)
            | Self::Cancelled { detail: d, .. } => d,
        }
    }

    /// Sorts an internal error into its kind, by the types of the errors in its chain (first
    /// match from the outside in). `signal` is the interrupt's, if it fired: then whatever
    /// failed, failed because it was asked to stop.
    pub(crate) fn classify(err: anyhow::Error, signal: Option<i32>) -> Self {
        let detail = Detail(err);
        if let Some(signal) = signal {
            return Self::Cancelled { signal, detail };
        }
        for cause in detail.0.chain() {
            if let Some(plan) = cause.downcast_ref::<z3_core::PlanError>() {
                return if plan.is_integrity() {
                    Self::Integrity(detail)
                } else {
                    Self::Failed(detail)
                };
            }
            if cause.is::<z3_core::DigestMismatch>()
                || cause.is::<z3_core::UntrustedObject>()
                || cause.is::<crate::KeyChanged>()
                || cause.is::<Diverged>()
            {
                return Self::Integrity(detail);
            }
            if cause.is::<crate::lock::LockedError>() {
                return Self::Locked(detail);
            }
            if cause.is::<crate::UsageError>()
                || cause.is::<z3_core::NameError>()
                || cause.is::<KeyError>()
                || cause.is::<z3_codec::AgeKeyError>()
            {
                return Self::InvalidInput(detail);
            }
        }
        Self::Failed(detail)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.detail().fmt(f)
    }
}

impl std::error::Error for Error {}

/// What happened: the failed step and its causes, outermost first. Displayed on one line,
/// `step: cause: root cause`.
pub struct Detail(anyhow::Error);

impl Detail {
    /// The errors from the outermost step to the root cause (e.g. a [`z3_s3::Error`] or a
    /// [`z3_zfs::Error`], to downcast).
    pub fn chain(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        self.0.chain()
    }

    /// The root cause.
    #[must_use]
    pub fn root_cause(&self) -> &(dyn std::error::Error + 'static) {
        self.0.root_cause()
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A [`KeySource`](crate::KeySource) could not read the keys (an invalid input).
#[derive(Debug)]
pub(crate) struct KeyError(pub(crate) crate::BoxError);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A sync refused because the two sides do not share history (`Error::Integrity`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Diverged(pub String);

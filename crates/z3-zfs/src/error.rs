//! The error type of this crate: a kind to match on, a message naming the object, and the
//! failed command (line, exit status, stderr) when a `zfs` process was involved.

use std::fmt;
use std::sync::Arc;

/// What went wrong, coarsely enough to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The dataset does not exist (`cannot open 'x': dataset does not exist`).
    DatasetNotFound,
    /// The snapshot (or the incremental source) does not exist.
    SnapshotNotFound,
    /// The dataset or snapshot already exists (fake helpers only; the real `zfs` reports this
    /// as [`ErrorKind::CommandFailed`] with its own stderr text).
    AlreadyExists,
    /// A `zfs` process exited non-zero (or was killed) for a reason not classified more precisely.
    CommandFailed,
    /// The program could not be started (missing, not executable).
    Spawn,
    /// The output of a `zfs` command could not be understood.
    Parse,
    /// Reading from or writing to a process (or the fake) failed.
    Io,
    /// A receive was given a stream that is not a valid, complete send stream.
    InvalidStream,
    /// A name passed as text is not a valid ZFS name: a `FakeZfs` helper's argument (feature
    /// `testing`), a bookmark name, or a hold tag z3 refuses (see
    /// [`validate_hold_tag`](crate::validate_hold_tag)). Nothing was run.
    InvalidName,
    /// The snapshot is in use and cannot be destroyed: it carries a hold (`zfs hold`), so
    /// `zfs destroy` says `dataset is busy`.
    Busy,
    /// `zfs` refused to work for this user: not root and no `zfs allow` delegation, or no
    /// access to `/dev/zfs`.
    PermissionDenied,
    /// This `zfs` lacks the feature: bookmarks on zfs-fuse 0.7 (`unrecognized command
    /// 'bookmark'`, `invalid type 'bookmark'`). Use holds instead.
    Unsupported,
}

impl ErrorKind {
    /// True for [`ErrorKind::DatasetNotFound`] and [`ErrorKind::SnapshotNotFound`].
    #[must_use]
    pub fn is_not_found(self) -> bool {
        matches!(self, Self::DatasetNotFound | Self::SnapshotNotFound)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DatasetNotFound => "dataset not found",
            Self::SnapshotNotFound => "snapshot not found",
            Self::AlreadyExists => "already exists",
            Self::CommandFailed => "command failed",
            Self::Spawn => "cannot start program",
            Self::Parse => "unexpected output",
            Self::Io => "i/o error",
            Self::InvalidStream => "invalid stream",
            Self::InvalidName => "invalid name",
            Self::Busy => "dataset is busy",
            Self::PermissionDenied => "permission denied",
            Self::Unsupported => "not supported by this zfs",
        })
    }
}

/// The facts of a failed `zfs` run, kept so that the user sees what `zfs` itself said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    /// Program and arguments, shell-quoted for display only (never executed through a shell).
    pub command: String,
    /// The exit code, or `None` when the process was killed by a signal.
    pub code: Option<i32>,
    /// How the process ended, for humans: `exit status: 1`, `signal: 9 (SIGKILL)`.
    pub status: String,
    /// The end of stderr (at most [`STDERR_LIMIT`] bytes), decoded lossily and trimmed.
    pub stderr: String,
}

/// How many trailing bytes of stderr an error keeps. `zfs` puts the reason in its last lines;
/// a usage text or a flood of progress lines must not make errors unbounded.
pub const STDERR_LIMIT: usize = 8 * 1024;

/// An error from [`Zfs`](crate::Zfs), [`SendStream`](crate::SendStream),
/// [`ReceiveSink`](crate::ReceiveSink) or the fake.
///
/// Cheap to clone (the source is shared), so a stream can report the same failure on every
/// read after the first.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    command: Option<Box<CommandFailure>>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a lowercase `message` naming the object.
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            command: None,
            source: None,
        }
    }

    /// Attaches the underlying cause (returned by [`std::error::Error::source`]).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Attaches the failed command.
    #[must_use]
    pub fn with_command(mut self, command: CommandFailure) -> Self {
        self.command = Some(Box::new(command));
        self
    }

    /// Builds the error for a process that ended unsuccessfully, classifying its stderr.
    ///
    /// `subject` is what the command was about (a dataset or snapshot name) and decides between
    /// [`ErrorKind::DatasetNotFound`] and [`ErrorKind::SnapshotNotFound`] when `zfs` says
    /// something does not exist.
    #[must_use]
    pub fn from_failure(failure: CommandFailure, subject: Subject) -> Self {
        let kind = crate::parse::error_kind_for(&failure.stderr, subject);
        let mut message = if failure.stderr.is_empty() {
            format!("`{}` failed ({})", failure.command, failure.status)
        } else {
            format!(
                "`{}` failed ({}): {}",
                failure.command, failure.status, failure.stderr
            )
        };
        if kind == ErrorKind::PermissionDenied {
            message.push_str(": run z3 as root, or delegate with `zfs allow`");
        }
        Self::new(kind, message).with_command(failure)
    }

    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True for [`ErrorKind::DatasetNotFound`] and [`ErrorKind::SnapshotNotFound`].
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.kind.is_not_found()
    }

    /// The failed command, when a `zfs` process (real or simulated by the fake) failed.
    #[must_use]
    pub fn command(&self) -> Option<&CommandFailure> {
        self.command.as_deref()
    }

    /// Shortcut for the trimmed stderr of the failed command, if any.
    #[must_use]
    pub fn stderr(&self) -> Option<&str> {
        self.command.as_deref().map(|c| c.stderr.as_str())
    }

    /// Wraps this error into an [`std::io::Error`] of kind `Other`, as streams report it.
    /// [`Error::from_io`] undoes it.
    #[must_use]
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }

    /// Recovers the [`Error`] carried by an `io::Error` from a [`SendStream`](crate::SendStream)
    /// or [`ReceiveSink`](crate::ReceiveSink); any other `io::Error` becomes [`ErrorKind::Io`].
    #[must_use]
    pub fn from_io(error: std::io::Error, context: &str) -> Self {
        match error.downcast::<Self>() {
            Ok(inner) => inner,
            Err(error) => Self::new(ErrorKind::Io, context.to_owned()).with_source(error),
        }
    }
}

/// What a command was about, used to classify "does not exist" errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A dataset: "does not exist" means [`ErrorKind::DatasetNotFound`].
    Dataset,
    /// A snapshot: "does not exist" means [`ErrorKind::SnapshotNotFound`] unless `zfs` names
    /// an object without `@` (the dataset itself is missing).
    Snapshot,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(stderr: &str) -> CommandFailure {
        CommandFailure {
            command: "zfs list -H -o name pool/x".into(),
            code: Some(1),
            status: "exit status: 1".into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn failure_message_names_command_status_and_stderr() {
        let e = Error::from_failure(
            failure("cannot open 'pool/x': dataset does not exist"),
            Subject::Dataset,
        );
        assert_eq!(e.kind(), ErrorKind::DatasetNotFound);
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "`zfs list -H -o name pool/x` failed (exit status: 1): cannot open 'pool/x': dataset does not exist"
        );
        assert_eq!(e.command().unwrap().code, Some(1));
    }

    #[test]
    fn io_round_trip_keeps_the_error() {
        let e = Error::from_failure(failure("boom"), Subject::Dataset);
        let io = e.clone().into_io();
        assert_eq!(io.kind(), std::io::ErrorKind::Other);
        assert!(io.get_ref().unwrap().downcast_ref::<Error>().is_some());
        let back = Error::from_io(io, "reading");
        assert_eq!(back.kind(), ErrorKind::CommandFailed);
        assert_eq!(back.stderr(), Some("boom"));
    }

    #[test]
    fn foreign_io_error_becomes_io_kind_with_source() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        let e = Error::from_io(io, "writing to `zfs receive pool/x@a`");
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.to_string(), "writing to `zfs receive pool/x@a`");
        assert!(std::error::Error::source(&e).is_some());
    }
}

//! The crate's error type.
//!
//! Policy: one public [`Error`] with a `#[non_exhaustive]` [`ErrorKind`] that callers branch on.
//! Errors that concern a running program carry its command line (program and arguments as given, not the
//! resolved path), so a message names what failed without the caller adding context.
//! The underlying `io::Error`, if any, is returned by `source()` and never repeated in the message.
//! Stream failures travel through `AsyncRead` as an `io::Error` of kind `Other` wrapping this type;
//! [`Error::downcast_io`] gets it back.

use std::fmt;
use std::io;
use std::process::ExitStatus;

/// An error from choosing, starting or running a codec.
/// `Display` is written by hand because the message depends on both the kind and the command line.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    /// The command line of the program concerned; `None` for errors that happen before one is chosen.
    command: Option<String>,
    #[source]
    source: Option<io::Error>,
}

/// What went wrong; see [`Error::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A compressor name (from the command line, the config or an object's metadata) that no codec handles.
    UnknownCodec {
        /// The name as given.
        name: String,
    },
    /// The program was not found on `PATH` (or, for a path, is not an executable file).
    ProgramNotFound {
        /// The program as given.
        program: String,
    },
    /// The program was found but could not be started; the source holds the OS error.
    Spawn,
    /// The program exited unsuccessfully or was killed by a signal.
    Failed {
        /// Program and arguments.
        command: String,
        /// The exit status, e.g. `exit status: 3` or `signal: 9 (SIGKILL)`.
        status: ExitStatus,
        /// The last few KiB of what the program wrote to stderr, trimmed; empty if it wrote nothing.
        stderr: String,
    },
    /// Reading the codec's input failed; the source holds the input's error.
    ///
    /// The program was killed rather than given end-of-file, so a truncated input never looks complete.
    Input,
    /// An in-process codec could not encode or decode the stream: corrupt or truncated
    /// compressed data, or a stream that ends in the middle of a frame. The source holds the
    /// codec's own error.
    Corrupt,
    /// A `[compressor:NAME]` definition that cannot be used.
    InvalidCustom {
        /// The section's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// An object's `encryption` metadata names a scheme z3 does not know.
    UnknownEncryption {
        /// The value as found.
        name: String,
    },
    /// An object is age-encrypted and no age identity (or passphrase) was given to decrypt it.
    NoIdentity,
    /// An age public key (recipient) or key setting that cannot be used.
    InvalidKey {
        /// What is wrong, naming the value (public keys only; secrets are never shown).
        reason: String,
    },
    /// An age recipients or identity file that cannot be read or holds no keys.
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// None of the age identities can decrypt the object: it was encrypted to other keys.
    NoMatchingIdentity {
        /// The identity files tried (or `passphrase`).
        identities: String,
    },
    /// Any other I/O failure while running the program (writing its stdin, reading its stdout, waiting for it),
    /// including a program that exited successfully without consuming all of its input.
    Io,
}

impl Error {
    /// Creates an error of `kind` without a command line or source.
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            command: None,
            source: None,
        }
    }

    /// Creates an error about the program running `command`.
    pub(crate) fn command(kind: ErrorKind, command: &str, source: Option<io::Error>) -> Self {
        Self {
            kind,
            command: Some(command.to_owned()),
            source,
        }
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The command line of the program concerned, if the error concerns one.
    #[must_use]
    pub fn command_line(&self) -> Option<&str> {
        self.command.as_deref()
    }

    /// Finds the codec error inside an `io::Error` returned by a codec's output stream.
    ///
    /// Returns `None` for I/O errors that did not come from this crate.
    #[must_use]
    pub fn downcast_io(err: &io::Error) -> Option<&Self> {
        err.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }
}

/// The compressor names z3 knows, for messages.
const KNOWN: &str =
    "none, zstd, zstd1 to zstd19, gzip, pigz1, pigz4, gpg, or a [compressor:NAME] of the config";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let command = self.command.as_deref().unwrap_or("");
        match &self.kind {
            ErrorKind::UnknownCodec { name } => {
                write!(f, "unknown compressor \"{name}\" (known: {KNOWN})")
            }
            ErrorKind::ProgramNotFound { program } => {
                write!(
                    f,
                    "program `{program}` not found on PATH: install it (restoring needs the \
                     program a backup was made with), or for new backups set COMPRESSOR to a \
                     built-in one such as zstd"
                )
            }
            ErrorKind::Spawn => write!(f, "cannot start `{command}`"),
            ErrorKind::Failed {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed ({status})")?;
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                Ok(())
            }
            ErrorKind::Input => write!(f, "reading the input of `{command}` failed"),
            ErrorKind::Corrupt => write!(f, "`{command}`: corrupt or truncated data"),
            ErrorKind::Io => write!(f, "i/o error running `{command}`"),
            ErrorKind::InvalidCustom { name, reason } => {
                write!(f, "invalid compressor definition \"{name}\": {reason}")
            }
            ErrorKind::UnknownEncryption { name } => {
                write!(f, "unknown encryption \"{name}\" (known: age)")
            }
            ErrorKind::NoIdentity => f.write_str(
                "the object is age-encrypted and no age identity or passphrase is configured",
            ),
            ErrorKind::InvalidKey { reason } => write!(f, "invalid age key: {reason}"),
            ErrorKind::KeyFile { path, reason } => {
                write!(f, "cannot use age key file {}: {reason}", path.display())
            }
            ErrorKind::NoMatchingIdentity { identities } => write!(
                f,
                "`{command}`: none of the age identities ({identities}) can decrypt this object; \
                 it was encrypted to other keys"
            ),
        }
    }
}

impl From<Error> for io::Error {
    /// Wraps the error as kind `Other`, the form in which output streams report it.
    fn from(err: Error) -> Self {
        io::Error::other(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn failed_message_names_command_status_and_stderr() {
        let kind = ErrorKind::Failed {
            command: "pigz -d".into(),
            status: ExitStatus::from_raw(2 << 8),
            stderr: "pigz: skipping: <stdin> unrecognized format".into(),
        };
        let err = Error::command(kind, "pigz -d", None);
        assert_eq!(
            err.to_string(),
            "`pigz -d` failed (exit status: 2): pigz: skipping: <stdin> unrecognized format"
        );
    }

    #[test]
    fn failed_message_without_stderr_has_no_dangling_colon() {
        let kind = ErrorKind::Failed {
            command: "false".into(),
            status: ExitStatus::from_raw(1 << 8),
            stderr: String::new(),
        };
        assert_eq!(
            Error::command(kind, "false", None).to_string(),
            "`false` failed (exit status: 1)"
        );
    }

    #[test]
    fn source_is_not_repeated_in_the_message() {
        let source = io::Error::other("disk on fire");
        let err = Error::command(ErrorKind::Input, "cat", Some(source));
        assert_eq!(err.to_string(), "reading the input of `cat` failed");
        assert_eq!(err.source().unwrap().to_string(), "disk on fire");
    }

    #[test]
    fn round_trips_through_io_error() {
        let err = Error::new(ErrorKind::UnknownCodec {
            name: "lzma".into(),
        });
        let io_err = io::Error::from(err);
        assert_eq!(io_err.kind(), io::ErrorKind::Other);
        let back = Error::downcast_io(&io_err).unwrap();
        assert_eq!(
            back.kind(),
            &ErrorKind::UnknownCodec {
                name: "lzma".into()
            }
        );
        assert!(Error::downcast_io(&io::Error::other("unrelated")).is_none());
    }
}

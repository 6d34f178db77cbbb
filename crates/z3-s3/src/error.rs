//! The one error type of this crate: a kind callers branch on plus a message that names the object.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The boxed cause kept behind [`Error::source`].
type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong, coarse enough to decide what to do next (retry, report, give up).
///
/// Every [`ObjectStore`](crate::ObjectStore) implementation maps its native errors onto these
/// kinds, so retry decisions never depend on which backend is in use.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The key does not exist (HTTP 404 on an object).
    NotFound,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The credentials were refused: `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, HTTP 403.
    AccessDenied,
    /// The multipart upload id is unknown: it was aborted, completed, or never existed.
    NoSuchUpload,
    /// The server asked us to slow down (`SlowDown`, HTTP 503 `SlowDown`, HTTP 429).
    Throttled,
    /// A failure that may go away on its own: 5xx, timeouts, dropped connections,
    /// HTTP 200 responses whose body is an `InternalError` or `SlowDown` error document, and
    /// `BadDigest` (a part's bytes did not match the checksum we computed: corrupted on the way,
    /// so sending the same buffer again can succeed).
    Transient,
    /// The endpoint could not be reached at all (connection refused, DNS failure, connect timeout).
    Unreachable,
    /// The server rejected the request as malformed (any other 4xx, e.g. `EntityTooSmall`, `InvalidPart`).
    InvalidRequest,
    /// The uploader was given an input stream with no bytes; S3 objects made by z3 are never empty.
    EmptyStream,
    /// A conditional request's precondition failed (HTTP 412): a conditional create
    /// (`If-None-Match: *`) found the key taken, or an `If-Match` found another object.
    AlreadyExists,
    /// The object changed while it was being downloaded: a ranged GET pinned with `If-Match` to
    /// the ETag the download started from was refused. Never retried: the bytes already read
    /// belong to another object.
    Changed,
    /// The operation was cancelled (z3: SIGINT or SIGTERM); an upload was aborted first.
    Cancelled,
    /// The object is in an archive tier (`InvalidObjectState`: S3 Glacier Flexible Retrieval or
    /// Deep Archive, or an Intelligent-Tiering archive tier) and must be restored from it before
    /// it can be read. Never retried: the restore takes hours.
    Archived,
    /// Object Lock protects the object version: its retention has not expired (in either mode:
    /// z3 never bypasses governance retention) or a legal hold is on, so it cannot be deleted,
    /// and its retention cannot be shortened. Never retried.
    Locked,
    /// The input needs more than [`MAX_PARTS`](crate::MAX_PARTS) parts at the chosen part sizes.
    TooManyParts,
    /// The input is longer than S3's largest object ([`MAX_OBJECT_SIZE`](crate::MAX_OBJECT_SIZE), 5 TiB).
    ObjectTooLarge,
    /// The completed object's checksum differs from the one computed from the bytes we sent,
    /// or the server confirmed a part with a checksum other than ours. The object is not
    /// trusted: the uploader deletes it.
    ChecksumMismatch,
    /// A resumed upload's regenerated stream differs from a part its journal recorded (another
    /// stream, or an encoder that is not deterministic): the old upload was aborted, and the
    /// stream must be sent again from its start. Never retried as is.
    ResumeMismatch,
    /// Reading the input stream failed (for example `zfs send` exited non-zero); carries the [`io::Error`].
    Source,
    /// Writing the downloaded bytes to the destination failed; carries the [`io::Error`].
    Sink,
    /// Anything else (unexpected responses, SDK construction failures, internal bugs).
    Other,
}

impl ErrorKind {
    /// A short lowercase name, used in messages and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not found",
            Self::NoSuchBucket => "no such bucket",
            Self::AccessDenied => "access denied",
            Self::NoSuchUpload => "no such upload",
            Self::Throttled => "throttled",
            Self::Transient => "transient error",
            Self::Unreachable => "endpoint unreachable",
            Self::InvalidRequest => "invalid request",
            Self::EmptyStream => "empty input stream",
            Self::Cancelled => "cancelled",
            Self::Archived => "archived",
            Self::Locked => "locked by object lock",
            Self::AlreadyExists => "already exists",
            Self::Changed => "object changed during the download",
            Self::TooManyParts => "too many parts",
            Self::ObjectTooLarge => "object too large",
            Self::ChecksumMismatch => "checksum mismatch",
            Self::ResumeMismatch => "resumed stream differs",
            Self::Source => "input stream failed",
            Self::Sink => "output stream failed",
            Self::Other => "other error",
        }
    }
}

impl ErrorKind {
    /// What the operator should do about an error of this kind, for the kinds a first run
    /// meets (a wrong endpoint, bucket or credentials); `None` for the others. Names z3's
    /// settings, never their values.
    #[must_use]
    pub fn hint(self) -> Option<&'static str> {
        match self {
            Self::Unreachable => {
                Some("check S3_ENDPOINT (or --endpoint) and that the S3 server is running")
            }
            Self::NoSuchBucket => Some("create the bucket, or fix BUCKET"),
            Self::AccessDenied => Some(
                "check S3_KEY_ID and S3_SECRET (not printed) and that they may use this bucket",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from an object store, the uploader or the downloader.
///
/// The message names the operation and the object (`s3://bucket/key`, upload id, part number)
/// and never contains credentials. The underlying cause, if any, is available through
/// [`std::error::Error::source`] and is not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl Error {
    /// Creates an error of `kind` with a human-readable `message` (lowercase, no trailing period).
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause, returned by [`std::error::Error::source`].
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The endpoint could not be reached: `{context}: cannot reach the S3 endpoint {endpoint}
    /// ({cause}): ` and the [hint](ErrorKind::hint). `cause` is short: "connection refused".
    #[must_use]
    pub fn unreachable(context: impl fmt::Display, endpoint: &str, cause: &str) -> Self {
        Self::with_hint(
            ErrorKind::Unreachable,
            format!("{context}: cannot reach the S3 endpoint {endpoint} ({cause})"),
        )
    }

    /// The bucket does not exist: names it, the endpoint (`None`: AWS's) and what S3 said.
    #[must_use]
    pub fn no_such_bucket(
        context: impl fmt::Display,
        bucket: &str,
        endpoint: Option<&str>,
        detail: &str,
    ) -> Self {
        let at = endpoint.unwrap_or("AWS S3");
        Self::with_hint(
            ErrorKind::NoSuchBucket,
            format!("{context}: the bucket '{bucket}' does not exist at {at} ({detail})"),
        )
    }

    /// S3 refused the request's credentials or permissions; `detail` is S3's code and message
    /// (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, `AccessDenied`), never a credential.
    #[must_use]
    pub fn access_denied(context: impl fmt::Display, detail: &str) -> Self {
        Self::with_hint(
            ErrorKind::AccessDenied,
            format!("{context}: access denied, S3 refused the credentials ({detail})"),
        )
    }

    /// `message` followed by the kind's [hint](ErrorKind::hint), so that the one line names
    /// the cause and the fix.
    fn with_hint(kind: ErrorKind, message: String) -> Self {
        match kind.hint() {
            Some(hint) => Self::new(kind, format!("{message}: {hint}")),
            None => Self::new(kind, message),
        }
    }

    /// Wraps a failure of the input stream as [`ErrorKind::Source`].
    #[must_use]
    pub fn source_failed(context: impl Into<String>, err: io::Error) -> Self {
        Self::new(ErrorKind::Source, context).with_source(err)
    }

    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the source chain.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same request again may succeed: [`ErrorKind::Transient`],
    /// [`ErrorKind::Throttled`] and [`ErrorKind::Unreachable`].
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Transient | ErrorKind::Throttled | ErrorKind::Unreachable
        )
    }

    /// The I/O error behind an [`ErrorKind::Source`] or [`ErrorKind::Sink`] error.
    #[must_use]
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_deref()?.downcast_ref::<io::Error>()
    }

    /// Finds a z3-s3 error wrapped in an [`io::Error`], as produced by
    /// [`DownloadReader`](crate::DownloadReader) when a download finally fails.
    #[must_use]
    pub fn from_io(err: &io::Error) -> Option<&Self> {
        err.get_ref()?.downcast_ref::<Self>()
    }

    /// Converts into an [`io::Error`] of kind [`io::ErrorKind::Other`] that wraps `self`,
    /// so that [`Error::from_io`] can recover it.
    #[must_use]
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// Prefixes the message with more context, keeping kind and source.
    #[must_use]
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        let retryable = [
            ErrorKind::Transient,
            ErrorKind::Throttled,
            ErrorKind::Unreachable,
        ];
        let permanent = [
            ErrorKind::NotFound,
            ErrorKind::NoSuchBucket,
            ErrorKind::AccessDenied,
            ErrorKind::NoSuchUpload,
            ErrorKind::InvalidRequest,
            ErrorKind::EmptyStream,
            ErrorKind::Cancelled,
            ErrorKind::Archived,
            ErrorKind::Locked,
            ErrorKind::AlreadyExists,
            ErrorKind::TooManyParts,
            ErrorKind::ObjectTooLarge,
            ErrorKind::ChecksumMismatch,
            ErrorKind::Source,
            ErrorKind::Sink,
            ErrorKind::Other,
        ];
        for kind in retryable {
            assert!(Error::new(kind, "x").is_retryable(), "{kind:?}");
        }
        for kind in permanent {
            assert!(!Error::new(kind, "x").is_retryable(), "{kind:?}");
        }
    }

    #[test]
    fn source_is_kept_and_not_repeated_in_message() {
        let err = Error::source_failed(
            "reading input for s3://b/k",
            io::Error::other("zfs send exited 1"),
        );
        assert_eq!(err.kind(), ErrorKind::Source);
        assert_eq!(err.to_string(), "reading input for s3://b/k");
        assert_eq!(err.io_error().unwrap().to_string(), "zfs send exited 1");
        assert_eq!(
            StdError::source(&err).unwrap().to_string(),
            "zfs send exited 1"
        );
    }

    #[test]
    fn io_round_trip() {
        let io = Error::new(ErrorKind::NotFound, "head s3://b/k: not found").into_io();
        assert_eq!(io.kind(), io::ErrorKind::Other);
        assert_eq!(Error::from_io(&io).unwrap().kind(), ErrorKind::NotFound);
        assert!(Error::from_io(&io::Error::other("plain")).is_none());
    }

    /// Issue 15, point 5: the errors of a first run name the cause and the fix on one line.
    #[test]
    fn first_run_errors_name_the_cause_and_the_fix() {
        let err = Error::unreachable(
            "check_bucket bucket b",
            "http://127.0.0.1:9",
            "connection refused",
        );
        assert_eq!(err.kind(), ErrorKind::Unreachable);
        assert_eq!(
            err.to_string(),
            "check_bucket bucket b: cannot reach the S3 endpoint http://127.0.0.1:9 \
             (connection refused): check S3_ENDPOINT (or --endpoint) and that the S3 server is running"
        );
        let err = Error::no_such_bucket(
            "list bucket x",
            "x",
            Some("http://s3:8333"),
            "NoSuchBucket, HTTP 404",
        );
        assert_eq!(err.kind(), ErrorKind::NoSuchBucket);
        assert_eq!(
            err.to_string(),
            "list bucket x: the bucket 'x' does not exist at http://s3:8333 (NoSuchBucket, HTTP 404): \
             create the bucket, or fix BUCKET"
        );
        let err = Error::access_denied("head s3://b/k", "InvalidAccessKeyId, HTTP 403");
        assert_eq!(err.kind(), ErrorKind::AccessDenied);
        let text = err.to_string();
        assert!(
            text.contains("access denied, S3 refused the credentials (InvalidAccessKeyId"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "check S3_KEY_ID and S3_SECRET (not printed) and that they may use this bucket"
            ),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(ErrorKind::Transient.hint(), None);
    }

    #[test]
    fn context_prefixes() {
        let err = Error::new(ErrorKind::Transient, "boom").context("put_part s3://b/k part 3");
        assert_eq!(err.to_string(), "put_part s3://b/k part 3: boom");
        assert_eq!(err.kind(), ErrorKind::Transient);
    }
}

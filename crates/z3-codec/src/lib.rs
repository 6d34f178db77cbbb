//! Stream codecs for z3: the compress, decompress, encrypt and decrypt stages between `zfs send` and the upload,
//! and between the download and `zfs receive`.
//!
//! - [`Codec`] is a stream transformation: it takes a [`BoxedReader`] and returns one.
//!   Its output reports end-of-file only once all input was consumed and the transformation succeeded,
//!   so a consumer that reads to EOF (an uploader, `zfs receive`) never takes a truncated stream for a whole one.
//! - [`ExternalCodec`] runs a filter program such as `pigz` or `gpg` as a child process.
//! - [`InProcessCodec`] runs zstd (multi-threaded) or gzip inside the process, on async-compression.
//! - [`Compressor`] names the compressors of the original z3 and gives their backup stages;
//!   [`decoder_for`] maps an object's `compressor` metadata to its restore stage.
//!
//! Failures inside a stream (a non-zero exit, a crash, a failed input read) surface as an `io::Error` of kind
//! `Other` that wraps an [`Error`]; [`Error::downcast_io`] recovers it with the command line, the exit status
//! and the end of the program's stderr.
//!
//! # Example
//!
//! ```
//! use tokio::io::AsyncReadExt;
//! use z3_codec::{BoxedReader, Codec, ErrorKind, ExternalCodec, decoder_for};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `cat` is the identity filter; real stages come from `Compressor::encoder` and `decoder_for`.
//! let cat = ExternalCodec::new("identity", "cat", vec![]);
//! let input: BoxedReader = Box::new(&b"zfs send stream"[..]);
//! let mut output = cat.apply(input)?;
//! let mut bytes = Vec::new();
//! output.read_to_end(&mut bytes).await?;
//! assert_eq!(bytes, b"zfs send stream");
//!
//! // Restore picks the stage from each object's metadata and refuses names it does not know.
//! let pigz4 = decoder_for(Some("pigz4"))?.map(|d| d.describe());
//! assert_eq!(pigz4.as_deref(), Some("gzip -d (in-process)"));
//! assert!(decoder_for(None)?.is_none());
//! let err = decoder_for(Some("lzma")).unwrap_err();
//! assert_eq!(err.kind(), &ErrorKind::UnknownCodec { name: "lzma".into() });
//! # Ok(())
//! # }
//! ```
//!
//! # External and in-process
//!
//! Objects written by the original z3 were compressed by `pigz` or encrypted by `gpg`, and their metadata says
//! so. `pigz1`/`pigz4` still *write* with `pigz`, so the original can restore them byte for byte; everything
//! gzip-shaped is *read* in-process, so restoring needs no pigz. zstd and gzip run in-process; tests cross-check
//! them against the `zstd`, `gzip` and `pigz` programs.
//!
//! # Runtime
//!
//! [`Codec::apply`] spawns Tokio tasks and must be called from within a Tokio runtime.

#![deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod age;
mod age_keys;
mod compressor;
mod digest;
mod error;
mod external;
mod inproc;
mod pipeline;
mod process;

/// Secrets (passphrases) as the age crate takes them.
pub use ::age::secrecy::{ExposeSecret, SecretString};
pub use age::{AgeCodec, AgeIdentities, AgeRecipients, is_age_secret_key};
pub use age_keys::{AgeKeyError, AgeKeys};
pub use compressor::{
    Compressor, Compressors, CustomCompressor, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL,
    MAX_ZSTD_WORKERS, Stage, decoder_for,
};
pub use digest::{DigestHandle, DigestReader};
pub use error::{Error, ErrorKind};
pub use external::ExternalCodec;
pub use inproc::InProcessCodec;
pub use pipeline::{Decoding, ENCRYPTION_AGE, Encoding, apply_all, describe_all, is_encrypted};
pub use process::CHILD_ENV_REMOVED;

/// A boxed async byte stream: the input and the output of a [`Codec`].
pub type BoxedReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// A stream transformation (compress, decompress, encrypt, decrypt).
///
/// Codecs compose by feeding one's output to the next one's `apply`.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// Short name for logs, e.g. `pigz1`.
    fn name(&self) -> &str;

    /// Human-readable stage for dry runs, e.g. `pigz -1 --blocksize 4096`.
    fn describe(&self) -> String;

    /// Starts transforming `input` and returns the transformed stream.
    ///
    /// The returned reader reports EOF only after all input was consumed successfully and the transformation
    /// completed successfully (for an external program: exit status 0). A failed input read, a non-zero exit or
    /// a crash surfaces as an `io::Error` of kind `Other` whose `get_ref()` downcasts to [`Error`].
    /// Dropping the reader stops the transformation (an external program is killed).
    ///
    /// # Errors
    ///
    /// Errors that occur before any data flows: [`ErrorKind::ProgramNotFound`] and [`ErrorKind::Spawn`] (which
    /// includes being called outside a Tokio runtime).
    fn apply(&self, input: BoxedReader) -> Result<BoxedReader, Error>;
}

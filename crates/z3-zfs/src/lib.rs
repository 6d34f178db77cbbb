//! The `zfs` command behind a narrow trait: list snapshots, estimate, send and receive.
//!
//! z3 needs five things from ZFS, and this crate offers exactly those through the [`Zfs`]
//! trait:
//!
//! * [`Zfs::list_snapshots`]: the snapshots of one dataset with guid and createtxg, in
//!   createtxg order (as [`z3_core::LocalSnapshot`]);
//! * [`Zfs::dataset_exists`];
//! * [`Zfs::estimate_send_size`]: how big `zfs send [-i from] to` will be, to size upload parts;
//! * [`Zfs::send`]: a running `zfs send` as a [`SendStream`] (`AsyncRead`);
//! * [`Zfs::receive`]: a running `zfs receive` as a [`ReceiveSink`] (`AsyncWrite`);
//! * [`Zfs::hold`], [`Zfs::release`] and [`Zfs::held_snapshots`]: `zfs hold` on the snapshots
//!   future backups build on, and the list of the ones z3 holds (also on zfs-fuse, which
//!   cannot list holds: z3 marks what it holds with the user property [`hold_property`]);
//! * [`Zfs::bookmark`], [`Zfs::list_bookmarks`] and [`Zfs::send_from_bookmark`] (OpenZFS only;
//!   [`ErrorKind::Unsupported`] on zfs-fuse).
//!
//! Implementations:
//!
//! * [`ZfsCli`] runs the `zfs` program (argument vectors, `LC_ALL=C`, stderr drained
//!   concurrently) and speaks both OpenZFS and zfs-fuse 0.7, detecting the dialect by attempt.
//! * `fake::FakeZfs` keeps datasets and snapshots in memory, mirrors `zfs receive`'s rules
//!   and error texts, and injects failures.
//!
//! [`parse`] holds the pure parsers of `zfs` output, and `conformance` the checks that both
//! implementations must pass.
//!
//! The test doubles, `fake` and `conformance`, are behind the `testing` feature (off by
//! default): `z3-zfs = { version = "…", features = ["testing"] }` under `[dev-dependencies]`.
//!
//! # Example
//!
//! A full send from one dataset into another, on the fake:
//!
//! ```
//! use z3_core::FullSnapshotName;
//! use z3_zfs::fake::FakeZfs;
//! use z3_zfs::{ReceiveOptions, Zfs};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let zfs = FakeZfs::new();
//! zfs.create_dataset("tank/src")?;
//! zfs.write("tank/src", "hello")?;
//! let guid = zfs.snapshot("tank/src@a")?;
//!
//! let source = FullSnapshotName::parse("tank/src@a")?;
//! let target = FullSnapshotName::parse("tank/dst@a")?;
//! let mut stream = zfs.send(None, &source).await?;
//! let mut sink = zfs.receive(&target, &ReceiveOptions::default()).await?;
//! tokio::io::copy(&mut stream, &mut sink).await?;
//! sink.finish().await?;
//!
//! assert_eq!(zfs.content("tank/dst").as_deref(), Some(&b"hello"[..]));
//! let received = zfs.list_snapshots(target.dataset()).await?;
//! assert_eq!(received[0].guid, guid); // a received snapshot keeps the source's guid
//! assert_eq!(zfs.calls(), ["send tank/src@a", "receive tank/dst@a", "list tank/dst"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Why a trait?
//!
//! Everything z3 decides (what to send, whether a chain is healthy, what to restore) depends on
//! what ZFS reports, and a real pool needs root, a kernel module or a FUSE daemon, and seconds
//! per operation. Behind a trait, the backup and restore engine runs in ordinary tests against
//! `fake::FakeZfs`, including failures that are hard to provoke on a real pool (a send killed
//! halfway, a receiver that dies). The trait is kept narrow, only what z3 uses, so the fake
//! stays small enough to be trusted, and the `conformance` checks run against both
//! implementations to keep it honest. Parsing is separate again ([`parse`]): pure functions over
//! captured text, so both `zfs` dialects are tested without either installed.
//!
//! # Streams and errors
//!
//! A pipe's EOF cannot tell a finished `zfs send` from a killed one. [`SendStream`] therefore
//! reports EOF only after the process exited successfully, and otherwise fails the read with an
//! [`Error`] carrying the command line, exit status and the end of stderr
//! ([`Error::from_io`] recovers it from the `io::Error`). [`ReceiveSink::finish`] likewise
//! returns the receiver's verdict. Dropping either kills the process.

#![deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod bookmark;
mod cli;
#[cfg(feature = "testing")]
pub mod conformance;
mod error;
#[cfg(feature = "testing")]
pub mod fake;
mod hold;
pub mod parse;
mod runner;
mod send_flags;
mod ssh;
mod stream;

use std::sync::Arc;

use z3_core::{DatasetName, FullSnapshotName, LocalSnapshot};

pub use bookmark::{FullBookmarkName, LocalBookmark};
pub use cli::ZfsCli;
pub use error::{CommandFailure, Error, ErrorKind, STDERR_LIMIT, Subject};
pub use hold::{MAX_HOLD_TAG_LEN, hold_property, validate_hold_tag};
pub use runner::CHILD_ENV_REMOVED;
pub use send_flags::SendFlags;
pub use ssh::{SshTarget, shell_quote};
pub use stream::{ReceiveSink, SendStream};

/// The operations z3 needs from ZFS. See the [crate documentation](crate) for why it is a trait.
///
/// Names are already validated types, so implementations do no further name checks.
#[async_trait::async_trait]
pub trait Zfs: Send + Sync + std::fmt::Debug {
    /// Snapshots of exactly this dataset (not its children), in createtxg order.
    ///
    /// # Errors
    /// [`ErrorKind::DatasetNotFound`] if the dataset does not exist; [`ErrorKind::Spawn`],
    /// [`ErrorKind::CommandFailed`] or [`ErrorKind::Parse`] for other failures.
    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<LocalSnapshot>, Error>;

    /// Whether the dataset exists.
    ///
    /// # Errors
    /// Only when the answer is unknown (e.g. `zfs` cannot run); a missing dataset is `Ok(false)`.
    async fn dataset_exists(&self, dataset: &DatasetName) -> Result<bool, Error>;

    /// `root` and every filesystem and volume below it, sorted (`zfs list -r`; `backup --all
    /// --recursive`).
    ///
    /// # Errors
    /// [`ErrorKind::DatasetNotFound`] if `root` does not exist; other kinds as for
    /// [`Zfs::list_snapshots`].
    async fn list_datasets(&self, root: &DatasetName) -> Result<Vec<DatasetName>, Error>;

    /// Size estimate of `zfs send [-i from] to`, in bytes.
    ///
    /// # Errors
    /// [`ErrorKind::SnapshotNotFound`] (or `DatasetNotFound`) when a snapshot is missing; other
    /// kinds as for [`Zfs::list_snapshots`].
    async fn estimate_send_size(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<SendEstimate, Error>;

    /// Starts `zfs send [-i from] to`.
    ///
    /// An implementation may report a problem (such as a missing snapshot) either here or when
    /// the stream is read; callers must handle both.
    ///
    /// # Errors
    /// [`ErrorKind::Spawn`] if the process cannot start; the fake also fails here for missing
    /// snapshots.
    async fn send(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<SendStream, Error>;

    /// Starts `zfs receive [-F] <target>`; the created snapshot is named `target`.
    ///
    /// Callers must check that the destination exists before receiving an incremental stream:
    /// zfs-fuse silently applies it to another dataset holding the base snapshot's guid when
    /// the destination is missing (docs/compatibility.md, "`zfs receive` errors").
    ///
    /// # Errors
    /// [`ErrorKind::Spawn`] if the process cannot start. Rejections of the stream arrive from
    /// [`ReceiveSink::finish`].
    async fn receive(
        &self,
        target: &FullSnapshotName,
        options: &ReceiveOptions,
    ) -> Result<ReceiveSink, Error>;

    /// Places the hold `tag` on `snapshot` (`zfs hold`), so that `zfs destroy` of it fails with
    /// `dataset is busy` ([`ErrorKind::Busy`]) until the hold is released. Holding a snapshot
    /// that already carries `tag` succeeds (idempotent).
    ///
    /// [`ZfsCli`] also marks the snapshot with the user property [`hold_property`]`(tag)`,
    /// before the hold, so that [`Zfs::held_snapshots`] works on zfs-fuse too.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for a tag [`validate_hold_tag`] refuses (nothing runs);
    /// [`ErrorKind::SnapshotNotFound`] (or `DatasetNotFound`) when the snapshot is missing.
    async fn hold(&self, snapshot: &FullSnapshotName, tag: &str) -> Result<(), Error>;

    /// Releases the hold `tag` from `snapshot` (`zfs release`) and clears z3's mark. Releasing
    /// a hold that does not exist succeeds (idempotent).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for a refused tag; [`ErrorKind::SnapshotNotFound`] (or
    /// `DatasetNotFound`) when the snapshot is missing.
    async fn release(&self, snapshot: &FullSnapshotName, tag: &str) -> Result<(), Error>;

    /// The snapshots of exactly this dataset that z3 held with `tag` and has not released (in
    /// no promised order; both implementations happen to list them in createtxg order).
    ///
    /// On [`ZfsCli`] these are the snapshots carrying z3's mark, which is set before each hold
    /// and cleared after each release: a superset of the actual holds (after a crash between
    /// the two steps, or a hold released by hand), never missing one. Releasing the extra ones
    /// is harmless.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for a refused tag; [`ErrorKind::DatasetNotFound`] when the
    /// dataset is missing.
    async fn held_snapshots(
        &self,
        dataset: &DatasetName,
        tag: &str,
    ) -> Result<Vec<FullSnapshotName>, Error>;

    /// Creates `bookmark` from `snapshot` (`zfs bookmark`). Both must be in the same dataset.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] where this `zfs` has no bookmarks (zfs-fuse);
    /// [`ErrorKind::InvalidName`] when the bookmark is in another dataset;
    /// [`ErrorKind::SnapshotNotFound`] when the snapshot is missing; [`ErrorKind::CommandFailed`]
    /// when the bookmark exists (`bookmark exists`).
    async fn bookmark(
        &self,
        snapshot: &FullSnapshotName,
        bookmark: &FullBookmarkName,
    ) -> Result<(), Error>;

    /// The bookmarks of exactly this dataset with guid, createtxg and creation, in createtxg
    /// order.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] where this `zfs` has no bookmarks (zfs-fuse);
    /// [`ErrorKind::DatasetNotFound`] when the dataset is missing.
    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<LocalBookmark>, Error>;

    /// Starts `zfs send -i <from bookmark> <to>`: an incremental stream that applies on a
    /// receiver whose latest snapshot has the bookmark's guid. Its size estimate is
    /// [`Zfs::estimate_send_size`]`(None, to)`, an over-estimate that only sizes upload parts.
    ///
    /// A separate method rather than a `from` of another type: [`Zfs::send`]'s signature and
    /// every caller stay as they are, and only the code that chose a bookmark base calls this.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] where this `zfs` has no bookmarks; otherwise as [`Zfs::send`].
    async fn send_from_bookmark(
        &self,
        from: &FullBookmarkName,
        to: &FullSnapshotName,
    ) -> Result<SendStream, Error>;

    /// Which of `wanted` this `zfs send` accepts, found by trying each with a dry run of `to`
    /// (`zfs send -n -P <flag> <to>`): a usage error (exit 2, `invalid option`) means it lacks
    /// the flag. The default answers none, like zfs-fuse.
    ///
    /// # Errors
    /// A failure of the dry run other than a usage error (a missing snapshot, say).
    async fn supported_send_flags(
        &self,
        to: &FullSnapshotName,
        wanted: SendFlags,
    ) -> Result<SendFlags, Error> {
        let _ = (to, wanted);
        Ok(SendFlags::NONE)
    }

    /// Which of `wanted` this `zfs` can receive, judged by its `zfs send` options (each of the
    /// four came to `zfs send` and `zfs receive` in the same OpenZFS release): each is tried
    /// with a dry run of `probe`, which need not exist (a missing snapshot means the option
    /// was understood). The default answers none, like zfs-fuse.
    ///
    /// # Errors
    /// A failure of the dry run other than a usage error or a missing snapshot.
    async fn receivable_send_flags(
        &self,
        probe: &FullSnapshotName,
        wanted: SendFlags,
    ) -> Result<SendFlags, Error> {
        let _ = (probe, wanted);
        Ok(SendFlags::NONE)
    }

    /// Starts `zfs send <flags> [-i from] to`; [`SendFlags::NONE`] is [`Zfs::send`].
    ///
    /// # Errors
    /// As [`Zfs::send`]; [`ErrorKind::Unsupported`] from the default, which sends no flags.
    async fn send_with_flags(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
        flags: SendFlags,
    ) -> Result<SendStream, Error> {
        if flags.is_empty() {
            return self.send(from, to).await;
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("this zfs cannot send with {flags}"),
        ))
    }
}

/// A size estimate for a send stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendEstimate {
    /// Estimated stream length in bytes. OpenZFS can report absurd values close to
    /// `u64::MAX` for some incrementals; consumers should clamp.
    pub bytes: u64,
    /// Where the number came from.
    pub method: EstimateMethod,
}

/// How a [`SendEstimate`] was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EstimateMethod {
    /// `zfs send -nvP` (OpenZFS): the dry-run estimate of the stream.
    DryRun,
    /// The `referenced` property of the target snapshot (zfs-fuse has no dry run). An
    /// over-estimate for incrementals, which is harmless because it only sizes upload parts.
    Referenced,
    /// `fake::FakeZfs` (feature `testing`): the exact length of its stream.
    Fake,
}

/// Options of [`Zfs::receive`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// `-F`: roll the destination back to its latest snapshot (incremental), or overwrite a
    /// destination without snapshots (full stream).
    pub force: bool,
}

#[async_trait::async_trait]
impl<T: Zfs + ?Sized> Zfs for Arc<T> {
    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<LocalSnapshot>, Error> {
        (**self).list_snapshots(dataset).await
    }

    async fn dataset_exists(&self, dataset: &DatasetName) -> Result<bool, Error> {
        (**self).dataset_exists(dataset).await
    }

    async fn list_datasets(&self, root: &DatasetName) -> Result<Vec<DatasetName>, Error> {
        (**self).list_datasets(root).await
    }

    async fn estimate_send_size(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<SendEstimate, Error> {
        (**self).estimate_send_size(from, to).await
    }

    async fn send(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<SendStream, Error> {
        (**self).send(from, to).await
    }

    async fn receive(
        &self,
        target: &FullSnapshotName,
        options: &ReceiveOptions,
    ) -> Result<ReceiveSink, Error> {
        (**self).receive(target, options).await
    }

    async fn hold(&self, snapshot: &FullSnapshotName, tag: &str) -> Result<(), Error> {
        (**self).hold(snapshot, tag).await
    }

    async fn release(&self, snapshot: &FullSnapshotName, tag: &str) -> Result<(), Error> {
        (**self).release(snapshot, tag).await
    }

    async fn held_snapshots(
        &self,
        dataset: &DatasetName,
        tag: &str,
    ) -> Result<Vec<FullSnapshotName>, Error> {
        (**self).held_snapshots(dataset, tag).await
    }

    async fn bookmark(
        &self,
        snapshot: &FullSnapshotName,
        bookmark: &FullBookmarkName,
    ) -> Result<(), Error> {
        (**self).bookmark(snapshot, bookmark).await
    }

    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<LocalBookmark>, Error> {
        (**self).list_bookmarks(dataset).await
    }

    async fn send_from_bookmark(
        &self,
        from: &FullBookmarkName,
        to: &FullSnapshotName,
    ) -> Result<SendStream, Error> {
        (**self).send_from_bookmark(from, to).await
    }

    async fn supported_send_flags(
        &self,
        to: &FullSnapshotName,
        wanted: SendFlags,
    ) -> Result<SendFlags, Error> {
        (**self).supported_send_flags(to, wanted).await
    }

    async fn receivable_send_flags(
        &self,
        probe: &FullSnapshotName,
        wanted: SendFlags,
    ) -> Result<SendFlags, Error> {
        (**self).receivable_send_flags(probe, wanted).await
    }

    async fn send_with_flags(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
        flags: SendFlags,
    ) -> Result<SendStream, Error> {
        (**self).send_with_flags(from, to, flags).await
    }
}

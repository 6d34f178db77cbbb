//! Behaviour every [`Zfs`] implementation must share, as `pub async fn` checks.
//!
//! The same functions run against [`FakeZfs`] in every `cargo test`
//! and against [`ZfsCli`](crate::ZfsCli) on a real pool when `Z3_TEST_ZPOOL` is set. That is
//! what keeps the fake honest: a difference between the two shows up as a failing check on one
//! of them. The checks panic (like `assert!`) on a violation; they are test support, not API
//! for production code.
//!
//! Each check creates its own children under a scratch `root` dataset, so the checks are
//! independent and may run in any order. The [`Scratch`] trait supplies what the [`Zfs`]
//! trait deliberately lacks: creating datasets, changing their content and taking snapshots.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use z3_core::{DatasetName, FullSnapshotName, LocalSnapshot, SnapshotName};

use crate::error::{Error, ErrorKind, Subject};
use crate::fake::FakeZfs;
use crate::runner::Invocation;
use crate::{EstimateMethod, FullBookmarkName, ReceiveOptions, SendStream, Zfs};

/// Test-only operations on a scratch area: the fixture side of the conformance checks.
#[async_trait::async_trait]
pub trait Scratch: Send + Sync {
    /// Creates an empty dataset whose parent exists.
    async fn create_dataset(&self, dataset: &DatasetName) -> Result<(), Error>;
    /// Replaces the dataset's test content with `data`.
    async fn write(&self, dataset: &DatasetName, data: &[u8]) -> Result<(), Error>;
    /// Takes a snapshot.
    async fn snapshot(&self, snapshot: &FullSnapshotName) -> Result<(), Error>;
    /// Destroys one snapshot (`zfs destroy pool/fs@snap`), as an auto-snapshot tool's cleanup
    /// would; a held snapshot must fail with [`ErrorKind::Busy`].
    async fn destroy_snapshot(&self, snapshot: &FullSnapshotName) -> Result<(), Error>;
}

#[async_trait::async_trait]
impl Scratch for FakeZfs {
    async fn create_dataset(&self, dataset: &DatasetName) -> Result<(), Error> {
        FakeZfs::create_dataset(self, dataset.as_str())
    }

    async fn write(&self, dataset: &DatasetName, data: &[u8]) -> Result<(), Error> {
        FakeZfs::write(self, dataset.as_str(), bytes::Bytes::copy_from_slice(data))
    }

    async fn snapshot(&self, snapshot: &FullSnapshotName) -> Result<(), Error> {
        FakeZfs::snapshot(self, &snapshot.to_string()).map(|_| ())
    }

    async fn destroy_snapshot(&self, snapshot: &FullSnapshotName) -> Result<(), Error> {
        FakeZfs::destroy_snapshot(self, &snapshot.to_string())
    }
}

/// [`Scratch`] on a real pool through the `zfs` program: `zfs create`, a file written into
/// the mountpoint, `zfs snapshot`, and `zfs destroy -r` for cleanup.
#[derive(Debug, Clone)]
pub struct CliScratch {
    program: PathBuf,
}

impl Default for CliScratch {
    fn default() -> Self {
        Self::new()
    }
}

/// The file that holds a dataset's test content inside its mountpoint.
const CONTENT_FILE: &str = "z3-conformance.bin";

impl CliScratch {
    /// Uses `zfs` from `PATH`.
    #[must_use]
    pub fn new() -> Self {
        Self::with_program("zfs")
    }

    /// Uses the given `zfs` program.
    #[must_use]
    pub fn with_program(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    fn invocation(&self, args: &[&str], subject: Subject) -> Invocation {
        Invocation::new(
            &self.program,
            args.iter().map(|a| (*a).to_owned()).collect(),
            subject,
        )
    }

    /// `zfs destroy -r <dataset>`, blocking, so that it can run from a `Drop` guard even while
    /// a test panics.
    ///
    /// zfs-fuse unmounts asynchronously: `destroy -r` often fails with `dataset is busy` after
    /// removing only some of the children. Each attempt makes progress, so this retries (up to
    /// 50 times, 200 ms apart) while that is the error.
    ///
    /// # Errors
    /// [`ErrorKind::Spawn`] if `zfs` cannot run, otherwise the last failure of `zfs destroy`.
    pub fn destroy_blocking(&self, dataset: &DatasetName) -> Result<(), Error> {
        let inv = self.invocation(&["destroy", "-r", dataset.as_str()], Subject::Dataset);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let output = std::process::Command::new(&self.program)
                .args(["destroy", "-r", dataset.as_str()])
                .env("LC_ALL", "C")
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| {
                    Error::new(ErrorKind::Spawn, format!("cannot run `{}`", inv.display()))
                        .with_source(e)
                })?;
            if output.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            if attempts >= 50 || !stderr.contains("dataset is busy") {
                return Err(inv.failure(output.status, stderr));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

#[async_trait::async_trait]
impl Scratch for CliScratch {
    async fn create_dataset(&self, dataset: &DatasetName) -> Result<(), Error> {
        self.invocation(&["create", dataset.as_str()], Subject::Dataset)
            .run()
            .await
            .map(|_| ())
    }

    async fn write(&self, dataset: &DatasetName, data: &[u8]) -> Result<(), Error> {
        let inv = self.invocation(
            &["get", "-H", "-o", "value", "mountpoint", dataset.as_str()],
            Subject::Dataset,
        );
        let mountpoint = inv.run().await?.stdout.trim().to_owned();
        if !mountpoint.starts_with('/') {
            return Err(Error::new(
                ErrorKind::Parse,
                format!("dataset '{dataset}' is not mounted (mountpoint {mountpoint:?})"),
            ));
        }
        let path = PathBuf::from(mountpoint).join(CONTENT_FILE);
        tokio::fs::write(&path, data).await.map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot write {}", path.display())).with_source(e)
        })
    }

    async fn snapshot(&self, snapshot: &FullSnapshotName) -> Result<(), Error> {
        self.invocation(&["snapshot", &snapshot.to_string()], Subject::Snapshot)
            .run()
            .await
            .map(|_| ())
    }

    async fn destroy_snapshot(&self, snapshot: &FullSnapshotName) -> Result<(), Error> {
        self.invocation(&["destroy", &snapshot.to_string()], Subject::Snapshot)
            .run()
            .await
            .map(|_| ())
    }
}

fn child(root: &DatasetName, name: &str) -> DatasetName {
    DatasetName::new(&format!("{root}/{name}")).expect("valid child dataset name")
}

fn snap(dataset: &DatasetName, name: &str) -> FullSnapshotName {
    FullSnapshotName::new(
        dataset.clone(),
        SnapshotName::new(name).expect("valid snapshot name"),
    )
    .expect("valid full snapshot name")
}

/// Deterministic, not very compressible test content.
fn data(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Reads a whole send stream; a failed producer becomes its [`Error`].
///
/// # Errors
/// The producer's error (with command, status and stderr) or an i/o error.
pub async fn read_stream(mut stream: SendStream) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let context = format!("cannot read from `{}`", stream.description());
    stream
        .read_to_end(&mut out)
        .await
        .map_err(|e| Error::from_io(e, &context))?;
    Ok(out)
}

/// Sends `from`→`to` into memory (test streams are small).
///
/// # Errors
/// The error of [`Zfs::send`] or of reading the stream.
pub async fn send_to_vec(
    zfs: &dyn Zfs,
    from: Option<&FullSnapshotName>,
    to: &FullSnapshotName,
) -> Result<Vec<u8>, Error> {
    read_stream(zfs.send(from, to).await?).await
}

/// Feeds `stream` to `zfs receive` and waits for the verdict.
///
/// A write error is ignored on purpose: it means the receiver died, and
/// [`ReceiveSink::finish`](crate::ReceiveSink::finish) reports why.
///
/// # Errors
/// The receiver's error.
pub async fn receive_from_slice(
    zfs: &dyn Zfs,
    target: &FullSnapshotName,
    force: bool,
    stream: &[u8],
) -> Result<(), Error> {
    let mut sink = zfs.receive(target, &ReceiveOptions { force }).await?;
    let _ = sink.write_all(stream).await;
    sink.finish().await
}

fn names(snapshots: &[LocalSnapshot]) -> Vec<String> {
    snapshots
        .iter()
        .map(|s| s.name.snapshot().to_string())
        .collect()
}

fn guids(snapshots: &[LocalSnapshot]) -> Vec<u64> {
    snapshots.iter().map(|s| s.guid).collect()
}

/// Lists snapshots in createtxg order, only of the dataset itself (not its children), with
/// names containing a space and `:`; an empty list for a dataset without snapshots;
/// [`ErrorKind::DatasetNotFound`] for a missing dataset.
pub async fn list_snapshots(zfs: &dyn Zfs, scratch: &dyn Scratch, root: &DatasetName) {
    let ds = child(root, "list");
    scratch.create_dataset(&ds).await.expect("create dataset");
    let short = ["a", "sp ace", "co:lon-da_sh.dot"];
    for (i, name) in short.iter().enumerate() {
        scratch
            .write(&ds, &data(i as u8, 1000))
            .await
            .expect("write");
        scratch.snapshot(&snap(&ds, name)).await.expect("snapshot");
    }
    let kid = child(&ds, "child");
    scratch.create_dataset(&kid).await.expect("create child");
    scratch
        .snapshot(&snap(&kid, "c"))
        .await
        .expect("snapshot child");

    let listed = zfs.list_snapshots(&ds).await.expect("list snapshots");
    assert_eq!(names(&listed), short, "names in createtxg order");
    // The dataset and its child, not its snapshots (`backup --all --recursive`).
    assert_eq!(
        zfs.list_datasets(&ds).await.expect("list datasets"),
        [ds.clone(), kid.clone()]
    );
    let missing = zfs.list_datasets(&child(root, "list-missing")).await;
    assert_eq!(
        missing.expect_err("a missing root").kind(),
        ErrorKind::DatasetNotFound
    );
    assert!(listed.iter().all(|s| s.name.dataset() == &ds));
    assert!(
        listed.windows(2).all(|w| w[0].createtxg < w[1].createtxg),
        "createtxg increases: {listed:?}"
    );
    let mut g = guids(&listed);
    g.sort_unstable();
    g.dedup();
    assert_eq!(g.len(), short.len(), "distinct guids");
    assert!(g.iter().all(|g| *g != 0));

    let empty = child(root, "list-empty");
    scratch
        .create_dataset(&empty)
        .await
        .expect("create dataset");
    assert_eq!(zfs.list_snapshots(&empty).await.expect("list empty"), []);

    let e = zfs
        .list_snapshots(&child(root, "list-missing"))
        .await
        .expect_err("listing a missing dataset fails");
    assert_eq!(e.kind(), ErrorKind::DatasetNotFound, "{e}");
    assert!(e.is_not_found());
}

/// `dataset_exists` is true for an existing dataset and false (not an error) for a missing one.
pub async fn dataset_exists(zfs: &dyn Zfs, _scratch: &dyn Scratch, root: &DatasetName) {
    assert!(zfs.dataset_exists(root).await.expect("exists"));
    assert!(
        !zfs.dataset_exists(&child(root, "exists-missing"))
            .await
            .expect("exists of a missing dataset")
    );
}

/// Estimates full and incremental sends (non-zero, same method for both) and fails with a
/// not-found error for a missing snapshot. Returns the method the implementation used.
pub async fn estimate_send_size(
    zfs: &dyn Zfs,
    scratch: &dyn Scratch,
    root: &DatasetName,
) -> EstimateMethod {
    let ds = child(root, "estimate");
    scratch.create_dataset(&ds).await.expect("create dataset");
    scratch
        .write(&ds, &data(1, 64 * 1024))
        .await
        .expect("write");
    let a = snap(&ds, "a");
    scratch.snapshot(&a).await.expect("snapshot");
    scratch
        .write(&ds, &data(2, 64 * 1024))
        .await
        .expect("write");
    let b = snap(&ds, "b");
    scratch.snapshot(&b).await.expect("snapshot");

    let full = zfs
        .estimate_send_size(None, &a)
        .await
        .expect("estimate full");
    assert!(full.bytes > 0, "{full:?}");
    let inc = zfs
        .estimate_send_size(Some(&a), &b)
        .await
        .expect("estimate incremental");
    assert!(inc.bytes > 0, "{inc:?}");
    assert_eq!(full.method, inc.method);

    let e = zfs
        .estimate_send_size(None, &snap(&ds, "missing"))
        .await
        .expect_err("estimating a missing snapshot fails");
    assert!(e.is_not_found(), "{e}");
    full.method
}

/// A full stream received into a new dataset creates the snapshot with the source's guid;
/// receiving it again without force fails because the destination exists.
pub async fn send_receive_full(zfs: &dyn Zfs, scratch: &dyn Scratch, root: &DatasetName) {
    let src = child(root, "full-src");
    scratch.create_dataset(&src).await.expect("create dataset");
    scratch
        .write(&src, &data(3, 32 * 1024))
        .await
        .expect("write");
    let a = snap(&src, "a");
    scratch.snapshot(&a).await.expect("snapshot");

    let stream = send_to_vec(zfs, None, &a).await.expect("full send");
    assert!(!stream.is_empty());
    let dst = child(root, "full-dst");
    receive_from_slice(zfs, &snap(&dst, "a"), false, &stream)
        .await
        .expect("receive into a new dataset");

    let source = zfs.list_snapshots(&src).await.expect("list source");
    let received = zfs.list_snapshots(&dst).await.expect("list destination");
    assert_eq!(names(&received), ["a"]);
    assert_eq!(
        guids(&received),
        guids(&source),
        "received guid equals source"
    );

    let e = receive_from_slice(zfs, &snap(&dst, "again"), false, &stream)
        .await
        .expect_err("full stream into an existing dataset without -F");
    let stderr = e.stderr().expect("receive errors carry stderr");
    assert!(stderr.contains("exists"), "{e}");
}

/// An incremental stream applies on top of the received base and keeps guids; applying the
/// same increment twice fails.
pub async fn send_receive_incremental(zfs: &dyn Zfs, scratch: &dyn Scratch, root: &DatasetName) {
    let src = child(root, "inc-src");
    scratch.create_dataset(&src).await.expect("create dataset");
    scratch
        .write(&src, &data(4, 16 * 1024))
        .await
        .expect("write");
    let a = snap(&src, "a");
    scratch.snapshot(&a).await.expect("snapshot");
    scratch
        .write(&src, &data(5, 48 * 1024))
        .await
        .expect("write");
    let b = snap(&src, "b");
    scratch.snapshot(&b).await.expect("snapshot");

    let dst = child(root, "inc-dst");
    let full = send_to_vec(zfs, None, &a).await.expect("full send");
    receive_from_slice(zfs, &snap(&dst, "a"), false, &full)
        .await
        .expect("receive base");
    let inc = send_to_vec(zfs, Some(&a), &b)
        .await
        .expect("incremental send");
    receive_from_slice(zfs, &snap(&dst, "b"), false, &inc)
        .await
        .expect("receive increment");

    let source = zfs.list_snapshots(&src).await.expect("list source");
    let received = zfs.list_snapshots(&dst).await.expect("list destination");
    assert_eq!(names(&received), ["a", "b"]);
    assert_eq!(guids(&received), guids(&source));

    let e = receive_from_slice(zfs, &snap(&dst, "b"), false, &inc)
        .await
        .expect_err("the same increment twice");
    assert!(!e.stderr().unwrap_or_default().is_empty(), "{e}");
}

/// Sending a missing snapshot (or from a missing base) fails with a not-found error that
/// carries `zfs`'s stderr, whether [`Zfs::send`] fails at once or the stream fails on read.
pub async fn send_missing_snapshot_fails(zfs: &dyn Zfs, scratch: &dyn Scratch, root: &DatasetName) {
    let ds = child(root, "sendfail");
    scratch.create_dataset(&ds).await.expect("create dataset");
    let a = snap(&ds, "a");
    scratch.snapshot(&a).await.expect("snapshot");
    let missing = snap(&ds, "absent");
    for (from, to) in [(None, &missing), (Some(&missing), &a)] {
        let e = send_to_vec(zfs, from, to)
            .await
            .expect_err("sending a missing snapshot fails");
        assert!(e.is_not_found(), "{e}");
        let stderr = e.stderr().expect("the error carries stderr");
        assert!(stderr.contains("does not exist"), "{e}");
        assert!(stderr.contains("absent"), "stderr names the snapshot: {e}");
    }
}

/// Receiving bytes that are not a send stream fails with [`ErrorKind::InvalidStream`] and
/// `zfs`'s stderr, and creates nothing.
pub async fn receive_garbage_fails(zfs: &dyn Zfs, _scratch: &dyn Scratch, root: &DatasetName) {
    let target = snap(&child(root, "garbage"), "x");
    let garbage: Vec<u8> = b"this is not a zfs send stream\n"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
    let e = receive_from_slice(zfs, &target, false, &garbage)
        .await
        .expect_err("garbage is refused");
    assert_eq!(e.kind(), ErrorKind::InvalidStream, "{e}");
    assert!(
        e.stderr().expect("stderr").contains("invalid stream"),
        "{e}"
    );
    assert!(!zfs.dataset_exists(target.dataset()).await.expect("exists"));
}

/// A receive dropped before the end of the stream (an aborted restore) commits nothing.
pub async fn dropped_receive_commits_nothing(
    zfs: &dyn Zfs,
    scratch: &dyn Scratch,
    root: &DatasetName,
) {
    let src = child(root, "drop-src");
    scratch.create_dataset(&src).await.expect("create dataset");
    scratch
        .write(&src, &data(6, 64 * 1024))
        .await
        .expect("write");
    let a = snap(&src, "a");
    scratch.snapshot(&a).await.expect("snapshot");
    let stream = send_to_vec(zfs, None, &a).await.expect("send");

    let dst = child(root, "drop-dst");
    let mut sink = zfs
        .receive(&snap(&dst, "a"), &ReceiveOptions::default())
        .await
        .expect("start receive");
    // Everything but the end of the stream, as when an upload dies halfway.
    let _ = sink.write_all(&stream[..stream.len() / 2]).await;
    drop(sink);
    // The receiver is killed asynchronously; give it a moment before looking.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!zfs.dataset_exists(&dst).await.expect("exists"));
}

/// The tag the hold checks use.
const TAG: &str = "z3-conformance";

/// A hold makes `zfs destroy` fail with [`ErrorKind::Busy`]; holding twice is fine; the held
/// snapshot is listed by [`Zfs::held_snapshots`] (for its tag only) until released; releasing
/// twice, or a snapshot never held, is fine; after the release the destroy succeeds. A missing
/// snapshot is [`ErrorKind::SnapshotNotFound`] for both calls, and a refused tag is
/// [`ErrorKind::InvalidName`].
///
/// Every hold it places is released before it returns normally, so that the scratch dataset
/// can be destroyed afterwards.
pub async fn holds(zfs: &dyn Zfs, scratch: &dyn Scratch, root: &DatasetName) {
    let ds = child(root, "holds");
    scratch.create_dataset(&ds).await.expect("create dataset");
    let (a, b, c) = (snap(&ds, "a"), snap(&ds, "b"), snap(&ds, "sp ace"));
    for s in [&a, &b, &c] {
        scratch.snapshot(s).await.expect("snapshot");
    }
    assert_eq!(zfs.held_snapshots(&ds, TAG).await.expect("held"), []);

    zfs.hold(&a, TAG).await.expect("hold");
    zfs.hold(&a, TAG).await.expect("holding twice is fine");
    zfs.hold(&c, TAG).await.expect("hold a name with a space");
    zfs.hold(&b, "z3-other")
        .await
        .expect("hold with another tag");
    assert_eq!(
        zfs.held_snapshots(&ds, TAG).await.expect("held"),
        [a.clone(), c.clone()]
    );
    assert_eq!(
        zfs.held_snapshots(&ds, "z3-other").await.expect("held"),
        std::slice::from_ref(&b)
    );

    let e = scratch
        .destroy_snapshot(&a)
        .await
        .expect_err("a held snapshot cannot be destroyed");
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(
        e.stderr().unwrap_or_default().contains("dataset is busy"),
        "{e}"
    );

    zfs.release(&a, TAG).await.expect("release");
    zfs.release(&a, TAG).await.expect("releasing twice is fine");
    zfs.release(&b, TAG)
        .await
        .expect("releasing a tag the snapshot does not carry is fine");
    assert_eq!(
        zfs.held_snapshots(&ds, TAG).await.expect("held"),
        std::slice::from_ref(&c)
    );
    scratch
        .destroy_snapshot(&a)
        .await
        .expect("a released snapshot can be destroyed");
    let names_left = names(&zfs.list_snapshots(&ds).await.expect("list"));
    assert_eq!(names_left, ["b", "sp ace"]);

    let missing = snap(&ds, "missing");
    for e in [
        zfs.hold(&missing, TAG)
            .await
            .expect_err("hold a missing snapshot"),
        zfs.release(&missing, TAG)
            .await
            .expect_err("release from a missing snapshot"),
    ] {
        assert_eq!(e.kind(), ErrorKind::SnapshotNotFound, "{e}");
    }
    let e = zfs
        .held_snapshots(&child(root, "holds-missing"), TAG)
        .await
        .expect_err("a missing dataset");
    assert_eq!(e.kind(), ErrorKind::DatasetNotFound, "{e}");
    for tag in ["", "bad tag!", "-x"] {
        let e = zfs.hold(&b, tag).await.expect_err("refused tag");
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    }

    zfs.release(&c, TAG).await.expect("release");
    zfs.release(&b, "z3-other").await.expect("release");
    assert_eq!(zfs.held_snapshots(&ds, TAG).await.expect("held"), []);
    assert_eq!(zfs.held_snapshots(&ds, "z3-other").await.expect("held"), []);
}

/// Every snapshot reports a `creation` time, non-decreasing with createtxg and within ten
/// minutes of `now` (Unix seconds; the fake's clock must be set to it); a received snapshot
/// keeps the sender's creation time.
pub async fn creation_times(zfs: &dyn Zfs, scratch: &dyn Scratch, root: &DatasetName, now: i64) {
    let ds = child(root, "creation");
    scratch.create_dataset(&ds).await.expect("create dataset");
    for name in ["a", "b", "c"] {
        scratch.write(&ds, name.as_bytes()).await.expect("write");
        scratch.snapshot(&snap(&ds, name)).await.expect("snapshot");
    }
    let listed = zfs.list_snapshots(&ds).await.expect("list");
    let times: Vec<i64> = listed
        .iter()
        .map(|s| s.creation.expect("creation is reported"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "creation does not decrease with createtxg: {listed:?}"
    );
    assert!(
        times.iter().all(|t| (t - now).abs() <= 600),
        "creation {times:?} is not within ten minutes of {now}"
    );

    let stream = send_to_vec(zfs, None, &snap(&ds, "a")).await.expect("send");
    let dst = child(root, "creation-dst");
    receive_from_slice(zfs, &snap(&dst, "a"), false, &stream)
        .await
        .expect("receive");
    let received = zfs.list_snapshots(&dst).await.expect("list");
    assert_eq!(received[0].creation, Some(times[0]), "{received:?}");
}

/// Bookmarks where this `zfs` has them: a bookmark reports its snapshot's guid, createtxg and
/// creation, survives the snapshot's destruction, and an incremental sent from it applies on a
/// copy of that snapshot. Where it has none (zfs-fuse), every bookmark call fails with
/// [`ErrorKind::Unsupported`]. Returns whether bookmarks are supported.
pub async fn bookmarks(zfs: &dyn Zfs, scratch: &dyn Scratch, root: &DatasetName) -> bool {
    let ds = child(root, "bookmarks");
    scratch.create_dataset(&ds).await.expect("create dataset");
    scratch.write(&ds, &data(7, 4096)).await.expect("write");
    let a = snap(&ds, "a");
    scratch.snapshot(&a).await.expect("snapshot");
    let mark = FullBookmarkName::of(&a);

    let other = FullBookmarkName::parse(&format!("{root}#a")).expect("bookmark name");
    let e = zfs
        .bookmark(&a, &other)
        .await
        .expect_err("a bookmark in another dataset");
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");

    if let Err(e) = zfs.bookmark(&a, &mark).await {
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let e = zfs.list_bookmarks(&ds).await.expect_err("no bookmarks");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let e = zfs
            .send_from_bookmark(&mark, &a)
            .await
            .expect_err("no bookmarks");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        return false;
    }
    let snapshot = zfs.list_snapshots(&ds).await.expect("list")[0].clone();
    let listed = zfs.list_bookmarks(&ds).await.expect("list bookmarks");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, mark);
    assert_eq!(
        (listed[0].guid, listed[0].createtxg, listed[0].creation),
        (snapshot.guid, snapshot.createtxg, snapshot.creation)
    );
    let e = zfs.bookmark(&a, &mark).await.expect_err("bookmark exists");
    assert!(e.stderr().unwrap_or_default().contains("exists"), "{e}");

    // A copy of @a elsewhere, then @a replaced by its bookmark.
    let dst = child(root, "bookmarks-dst");
    let full = send_to_vec(zfs, None, &a).await.expect("send");
    receive_from_slice(zfs, &snap(&dst, "a"), false, &full)
        .await
        .expect("receive base");
    scratch.destroy_snapshot(&a).await.expect("destroy");
    assert_eq!(zfs.list_bookmarks(&ds).await.expect("list").len(), 1);

    scratch.write(&ds, &data(8, 4096)).await.expect("write");
    let b = snap(&ds, "b");
    scratch.snapshot(&b).await.expect("snapshot");
    let inc = read_stream(zfs.send_from_bookmark(&mark, &b).await.expect("send"))
        .await
        .expect("incremental from a bookmark");
    receive_from_slice(zfs, &snap(&dst, "b"), false, &inc)
        .await
        .expect("the increment applies on the copy of the bookmarked snapshot");
    let source = zfs.list_snapshots(&ds).await.expect("list");
    let received = zfs.list_snapshots(&dst).await.expect("list");
    assert_eq!(
        received.last().map(|s| s.guid),
        source.last().map(|s| s.guid)
    );
    true
}

/// Runs every check under `root`; returns the estimate method the implementation used.
pub async fn run_all(zfs: &dyn Zfs, scratch: &dyn Scratch, root: &DatasetName) -> EstimateMethod {
    list_snapshots(zfs, scratch, root).await;
    dataset_exists(zfs, scratch, root).await;
    let method = estimate_send_size(zfs, scratch, root).await;
    send_receive_full(zfs, scratch, root).await;
    send_receive_incremental(zfs, scratch, root).await;
    send_missing_snapshot_fails(zfs, scratch, root).await;
    receive_garbage_fails(zfs, scratch, root).await;
    dropped_receive_commits_nothing(zfs, scratch, root).await;
    holds(zfs, scratch, root).await;
    bookmarks(zfs, scratch, root).await;
    method
}

//! [`FakeZfs`]: an in-memory [`Zfs`] with real `zfs` receive semantics and fault injection.
//!
//! The fake holds datasets (each with a byte string as its "content") and their snapshots. Its
//! send streams use a private format ([`FakeStream`]) with a magic number, a header carrying the
//! source and base guids and names, the snapshot's content as payload and a trailing checksum,
//! so that a truncated or corrupted upload is detected on receive, as real `zfs receive` does.
//!
//! Receive follows OpenZFS (docs/compatibility.md, "`zfs receive` errors"), with the same stderr
//! texts so that the errors classify exactly like [`ZfsCli`](crate::ZfsCli)'s:
//! * a full stream into an existing dataset needs `force`, and even then the dataset must have
//!   no snapshots;
//! * an incremental stream needs the destination to exist, its most recent snapshot to have the
//!   stream's base guid, and no changes since that snapshot unless `force` (which rolls back);
//! * the target snapshot name must be new;
//! * on success the destination gets the snapshot **with the source's guid** and the payload as
//!   its content.
//!
//! Errors that `zfs` would print are built as failed commands (`zfs receive …`, exit 1, the
//! stderr text), so `err.stderr()` works the same on both implementations.
//!
//! Beyond receive, the fake models the OpenZFS dialect of the rest of the trait:
//! * every snapshot has a `creation` time from the fake's clock ([`FakeZfs::set_clock`],
//!   [`FakeZfs::snapshot_at`]), which a received snapshot keeps (as on real ZFS);
//! * holds: a held snapshot refuses [`FakeZfs::destroy_snapshot`], [`FakeZfs::destroy_dataset`]
//!   and a [`FakeZfs::rollback`] past it with [`ErrorKind::Busy`] (`dataset is busy`), and the
//!   fake lists its holds directly ([`FakeZfs::holds`]);
//! * bookmarks, which survive their snapshot and can be sent from; [`FakeZfs::disable_bookmarks`]
//!   makes it answer like zfs-fuse ([`ErrorKind::Unsupported`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;
use z3_core::{DatasetName, FullSnapshotName, LocalSnapshot};

use crate::bookmark::{FullBookmarkName, LocalBookmark};
use crate::cli::{bookmarks_unsupported, check_same_dataset};
use crate::error::{CommandFailure, Error, ErrorKind, Subject};
use crate::hold::validate_hold_tag;
use crate::{EstimateMethod, ReceiveOptions, ReceiveSink, SendEstimate, SendStream, Zfs};

/// The creation time of the fake's first snapshot unless a test sets the clock:
/// 2023-11-14T22:13:20Z.
pub const DEFAULT_CLOCK: i64 = 1_700_000_000;

/// An in-memory ZFS. Cloning shares the state, so a test can keep a handle for inspection
/// while the code under test owns another (as `Arc<dyn Zfs>` or `Box<dyn Zfs>`).
#[derive(Clone, Default)]
pub struct FakeZfs {
    state: Arc<Mutex<State>>,
}

struct State {
    datasets: BTreeMap<String, Dataset>,
    /// Source of guids and createtxgs, so that runs are deterministic.
    counter: u64,
    /// The creation time (Unix seconds) of the next snapshot; each snapshot advances it by one
    /// second, so creation never decreases with createtxg.
    clock: i64,
    /// Answer bookmark operations like zfs-fuse (no bookmarks).
    no_bookmarks: bool,
    fail_next_send: Option<usize>,
    stall_next_send: Option<usize>,
    fail_next_receive: Option<String>,
    /// The optional `zfs send` flags this fake accepts (default: none, like zfs-fuse).
    send_flags: crate::SendFlags,
    calls: Vec<String>,
    /// Stalled send streams not dropped yet (a `zfs send` still running).
    stalled_alive: Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            datasets: BTreeMap::new(),
            counter: 0,
            clock: DEFAULT_CLOCK,
            no_bookmarks: false,
            fail_next_send: None,
            stall_next_send: None,
            fail_next_receive: None,
            send_flags: crate::SendFlags::NONE,
            calls: Vec::new(),
            stalled_alive: Arc::default(),
        }
    }
}

#[derive(Default)]
struct Dataset {
    content: Bytes,
    /// Written since the most recent snapshot (blocks an incremental receive without force).
    modified: bool,
    snapshots: Vec<Snap>,
    bookmarks: Vec<Mark>,
}

#[derive(Clone)]
struct Snap {
    name: String,
    guid: u64,
    createtxg: u64,
    creation: i64,
    content: Bytes,
    /// Hold tags (`zfs hold`), each at most once.
    holds: std::collections::BTreeSet<String>,
}

/// A bookmark: the identity of a snapshot, without its content.
#[derive(Clone)]
struct Mark {
    name: String,
    guid: u64,
    createtxg: u64,
    creation: i64,
}

impl Dataset {
    /// The first held snapshot among `snapshots`, as `zfs destroy` would report it.
    fn first_held<'a>(snapshots: impl IntoIterator<Item = &'a Snap>) -> Option<&'a Snap> {
        snapshots.into_iter().find(|s| !s.holds.is_empty())
    }
}

/// OpenZFS's refusal to destroy a held snapshot (zfs-fuse: `cannot destroy 'p/fs@a': …`).
fn busy(command: String, dataset: &str, snapshot: &str) -> Error {
    zfs_error(
        command,
        1,
        &format!("cannot destroy snapshot {dataset}@{snapshot}: dataset is busy"),
        Subject::Snapshot,
    )
}

impl State {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// A guid that looks random but depends only on the counter (splitmix64).
    fn next_guid(&mut self) -> u64 {
        loop {
            let mut z = self.next().wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    }

    fn snap(&self, name: &FullSnapshotName) -> Option<&Snap> {
        self.datasets
            .get(name.dataset().as_str())?
            .snapshots
            .iter()
            .find(|s| s.name == name.snapshot().as_str())
    }
}

/// A simulated failed `zfs` command.
fn zfs_error(command: String, code: i32, stderr: &str, subject: Subject) -> Error {
    Error::from_failure(
        CommandFailure {
            command,
            code: Some(code),
            status: format!("exit status: {code}"),
            stderr: stderr.to_owned(),
        },
        subject,
    )
}

fn invalid_name(e: z3_core::NameError) -> Error {
    Error::new(ErrorKind::InvalidName, e.to_string()).with_source(e)
}

fn display_send(from: Option<&FullSnapshotName>, to: &FullSnapshotName) -> String {
    match from {
        Some(from) => format!("-i {from} {to}"),
        None => to.to_string(),
    }
}

/// A send stream that yields its prefix and then never another byte.
struct Stalled {
    prefix: io::Cursor<Bytes>,
    alive: Arc<std::sync::atomic::AtomicUsize>,
}

impl tokio::io::AsyncRead for Stalled {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.prefix).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => Poll::Pending,
            other => other,
        }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl FakeZfs {
    /// An empty fake with no datasets.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not cascade into poisoned-lock panics here.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates a dataset with empty content, and its missing ancestors (like `zfs create -p`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for an invalid name, [`ErrorKind::AlreadyExists`] if the
    /// dataset exists.
    pub fn create_dataset(&self, dataset: &str) -> Result<(), Error> {
        let name = DatasetName::new(dataset).map_err(invalid_name)?;
        let mut state = self.lock();
        if state.datasets.contains_key(name.as_str()) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("dataset '{name}' already exists"),
            ));
        }
        let mut prefix = String::new();
        for component in name.as_str().split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            state.datasets.entry(prefix.clone()).or_default();
        }
        Ok(())
    }

    /// Replaces the content of `dataset`, marking it modified since its latest snapshot.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] or [`ErrorKind::DatasetNotFound`].
    pub fn write(&self, dataset: &str, data: impl Into<Bytes>) -> Result<(), Error> {
        let name = DatasetName::new(dataset).map_err(invalid_name)?;
        let mut state = self.lock();
        let ds = state
            .datasets
            .get_mut(name.as_str())
            .ok_or_else(|| not_found(&name))?;
        ds.content = data.into();
        ds.modified = true;
        Ok(())
    }

    /// Snapshots the current content as `dataset@snapshot`; returns the new guid.
    ///
    /// Guids come from a counter through a mixing function and createtxgs from the same
    /// counter, so a test that performs the same steps always sees the same values.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`], [`ErrorKind::DatasetNotFound`], or
    /// [`ErrorKind::AlreadyExists`] if the snapshot exists.
    pub fn snapshot(&self, full_name: &str) -> Result<u64, Error> {
        let name = FullSnapshotName::parse(full_name).map_err(invalid_name)?;
        let mut state = self.lock();
        if !state.datasets.contains_key(name.dataset().as_str()) {
            return Err(not_found(name.dataset()));
        }
        if state.snap(&name).is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("snapshot '{name}' already exists"),
            ));
        }
        let guid = state.next_guid();
        let createtxg = state.next();
        let creation = state.clock;
        state.clock += 1;
        let ds = state
            .datasets
            .get_mut(name.dataset().as_str())
            .ok_or_else(|| not_found(name.dataset()))?;
        ds.snapshots.push(Snap {
            name: name.snapshot().as_str().to_owned(),
            guid,
            createtxg,
            creation,
            content: ds.content.clone(),
            holds: std::collections::BTreeSet::new(),
        });
        ds.modified = false;
        Ok(guid)
    }

    /// Sets the creation time (Unix seconds) of the next snapshot; later ones follow one second
    /// apart.
    pub fn set_clock(&self, unix_secs: i64) {
        self.lock().clock = unix_secs;
    }

    /// Takes a snapshot created at `unix_secs` (like [`FakeZfs::snapshot`] after
    /// [`FakeZfs::set_clock`]); returns the new guid.
    ///
    /// # Errors
    /// As for [`FakeZfs::snapshot`].
    pub fn snapshot_at(&self, full_name: &str, unix_secs: i64) -> Result<u64, Error> {
        self.set_clock(unix_secs);
        self.snapshot(full_name)
    }

    /// Answers bookmark operations like zfs-fuse from now on: [`ErrorKind::Unsupported`].
    pub fn disable_bookmarks(&self) {
        self.lock().no_bookmarks = true;
    }

    /// The hold tags of `dataset@snapshot`, sorted (empty if it does not exist). The fake can
    /// list holds; zfs-fuse cannot, which is why callers use [`Zfs::held_snapshots`].
    #[must_use]
    pub fn holds(&self, full_name: &str) -> Vec<String> {
        let Ok(name) = FullSnapshotName::parse(full_name) else {
            return Vec::new();
        };
        self.lock()
            .snap(&name)
            .map(|s| s.holds.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Destroys one snapshot (like `zfs destroy dataset@snapshot`); its bookmarks stay.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`]; [`ErrorKind::SnapshotNotFound`] if it does not exist;
    /// [`ErrorKind::Busy`] (`dataset is busy`) if it is held.
    pub fn destroy_snapshot(&self, full_name: &str) -> Result<(), Error> {
        let name = FullSnapshotName::parse(full_name).map_err(invalid_name)?;
        let command = format!("zfs destroy {name}");
        let mut state = self.lock();
        let snap = state.snap(&name).ok_or_else(|| {
            zfs_error(
                command.clone(),
                1,
                &format!("cannot open '{name}': dataset does not exist"),
                Subject::Snapshot,
            )
        })?;
        if !snap.holds.is_empty() {
            return Err(busy(
                command,
                name.dataset().as_str(),
                name.snapshot().as_str(),
            ));
        }
        if let Some(ds) = state.datasets.get_mut(name.dataset().as_str()) {
            ds.snapshots.retain(|s| s.name != name.snapshot().as_str());
        }
        Ok(())
    }

    /// Destroys `dataset` with its snapshots and descendants (like `zfs destroy -r`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`], [`ErrorKind::DatasetNotFound`], or [`ErrorKind::Busy`] when
    /// one of the snapshots is held (nothing is destroyed then).
    pub fn destroy_dataset(&self, dataset: &str) -> Result<(), Error> {
        let name = DatasetName::new(dataset).map_err(invalid_name)?;
        let mut state = self.lock();
        if !state.datasets.contains_key(name.as_str()) {
            return Err(not_found(&name));
        }
        let prefix = format!("{name}/");
        let doomed = |k: &str| k == name.as_str() || k.starts_with(&prefix);
        if let Some((ds, snap)) = state
            .datasets
            .iter()
            .filter(|(k, _)| doomed(k))
            .find_map(|(k, d)| Dataset::first_held(&d.snapshots).map(|s| (k, s)))
        {
            return Err(busy(format!("zfs destroy -r {name}"), ds, &snap.name));
        }
        state.datasets.retain(|k, _| !doomed(k));
        Ok(())
    }

    /// Rolls `dataset` back to `dataset@snapshot`, destroying the later snapshots (like
    /// `zfs rollback -r`): the content becomes the snapshot's.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`], [`ErrorKind::SnapshotNotFound`] if the snapshot does not
    /// exist, or [`ErrorKind::Busy`] if a later snapshot is held (nothing changes then).
    pub fn rollback(&self, full_name: &str) -> Result<(), Error> {
        let name = FullSnapshotName::parse(full_name).map_err(invalid_name)?;
        let mut state = self.lock();
        let missing = || {
            Error::new(
                ErrorKind::SnapshotNotFound,
                format!("cannot open '{name}': dataset does not exist"),
            )
        };
        let ds = state
            .datasets
            .get_mut(name.dataset().as_str())
            .ok_or_else(missing)?;
        let at = ds
            .snapshots
            .iter()
            .position(|s| s.name == name.snapshot().as_str())
            .ok_or_else(missing)?;
        if let Some(held) = Dataset::first_held(&ds.snapshots[at + 1..]) {
            return Err(busy(
                format!("zfs rollback -r {name}"),
                name.dataset().as_str(),
                &held.name,
            ));
        }
        ds.snapshots.truncate(at + 1);
        ds.content = ds.snapshots[at].content.clone();
        ds.modified = false;
        Ok(())
    }

    /// Renames `dataset@from` to `dataset@to` (like `zfs rename`); the guid stays.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`], [`ErrorKind::SnapshotNotFound`], or
    /// [`ErrorKind::AlreadyExists`] if `to` exists.
    pub fn rename_snapshot(&self, full_name: &str, to: &str) -> Result<(), Error> {
        let name = FullSnapshotName::parse(full_name).map_err(invalid_name)?;
        let to = z3_core::SnapshotName::new(to).map_err(invalid_name)?;
        let mut state = self.lock();
        let ds = state
            .datasets
            .get_mut(name.dataset().as_str())
            .ok_or_else(|| not_found(name.dataset()))?;
        if ds.snapshots.iter().any(|s| s.name == to.as_str()) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("snapshot '{}@{to}' already exists", name.dataset()),
            ));
        }
        let snap = ds
            .snapshots
            .iter_mut()
            .find(|s| s.name == name.snapshot().as_str())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::SnapshotNotFound,
                    format!("cannot open '{name}': dataset does not exist"),
                )
            })?;
        to.as_str().clone_into(&mut snap.name);
        Ok(())
    }

    /// The current content of `dataset`, `None` if it does not exist.
    #[must_use]
    pub fn content(&self, dataset: &str) -> Option<Bytes> {
        self.lock().datasets.get(dataset).map(|d| d.content.clone())
    }

    /// The content captured by `dataset@snapshot`, `None` if it does not exist.
    #[must_use]
    pub fn snapshot_content(&self, full_name: &str) -> Option<Bytes> {
        let name = FullSnapshotName::parse(full_name).ok()?;
        self.lock().snap(&name).map(|s| s.content.clone())
    }

    /// Short names of the snapshots of `dataset` in createtxg order (empty if it does not exist).
    #[must_use]
    pub fn snapshot_names(&self, dataset: &str) -> Vec<String> {
        self.lock()
            .datasets
            .get(dataset)
            .map(|d| d.snapshots.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether `dataset` exists (without recording a call, unlike [`Zfs::dataset_exists`]).
    #[must_use]
    pub fn exists(&self, dataset: &str) -> bool {
        self.lock().datasets.contains_key(dataset)
    }

    /// Makes the next [`Zfs::send`] yield `after_bytes` bytes of its stream and then fail, as
    /// a `zfs send` killed by a signal would.
    pub fn fail_next_send(&self, after_bytes: usize) {
        self.lock().fail_next_send = Some(after_bytes);
    }

    /// Makes the next [`Zfs::send`] yield `after_bytes` bytes of its stream and then hang, as a
    /// `zfs send` blocked on a slow disk would. [`FakeZfs::stalled_sends`] counts such streams
    /// that were not dropped (killed) yet.
    pub fn stall_next_send(&self, after_bytes: usize) {
        self.lock().stall_next_send = Some(after_bytes);
    }

    /// Stalled sends ([`FakeZfs::stall_next_send`]) still alive.
    #[must_use]
    pub fn stalled_sends(&self) -> usize {
        self.lock()
            .stalled_alive
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes the next [`Zfs::receive`] accept the whole stream and then fail with `message`
    /// as its stderr (exit 1), committing nothing.
    pub fn fail_next_receive(&self, message: &str) {
        self.lock().fail_next_receive = Some(message.to_owned());
    }

    /// Which optional `zfs send` flags this fake accepts, like an OpenZFS of some version
    /// (default: none, like zfs-fuse).
    pub fn set_send_flags(&self, flags: crate::SendFlags) {
        self.lock().send_flags = flags;
    }

    /// The trait operations performed so far, in order: `list pool/fs`, `exists pool/fs`,
    /// `estimate [-i from] to`, `send [flags] [-i from] to`, `receive [-F] target`.
    #[must_use]
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The snapshot a hold or release applies to, with OpenZFS's errors when it is missing:
    /// `cannot open '<dataset>': …` for a missing dataset, `<action> '<snapshot>': dataset does
    /// not exist` for a missing snapshot.
    fn snap_for_hold<'a>(
        state: &'a mut State,
        snapshot: &FullSnapshotName,
        command: &str,
        action: &str,
    ) -> Result<&'a mut Snap, Error> {
        let Some(ds) = state.datasets.get_mut(snapshot.dataset().as_str()) else {
            return Err(zfs_error(
                command.to_owned(),
                1,
                &format!(
                    "cannot open '{}': dataset does not exist",
                    snapshot.dataset()
                ),
                Subject::Snapshot,
            ));
        };
        ds.snapshots
            .iter_mut()
            .find(|s| s.name == snapshot.snapshot().as_str())
            .ok_or_else(|| {
                zfs_error(
                    command.to_owned(),
                    1,
                    &format!("{action} '{snapshot}': dataset does not exist"),
                    Subject::Snapshot,
                )
            })
    }

    /// Checks that `from` (if any) and `to` can be sent; `verb` names the simulated command.
    fn check_send(
        state: &State,
        verb: &str,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<Bytes, Error> {
        let command = format!("zfs {verb} {}", display_send(from, to));
        let missing = |name: &FullSnapshotName| {
            zfs_error(
                command.clone(),
                1,
                &format!("cannot open '{name}': dataset does not exist"),
                Subject::Snapshot,
            )
        };
        let to_snap = state.snap(to).ok_or_else(|| missing(to))?;
        let from_guid = match from {
            None => 0,
            Some(from) => {
                if from.dataset() != to.dataset() {
                    return Err(zfs_error(
                        command,
                        2,
                        "incremental source must be in same filesystem",
                        Subject::Snapshot,
                    ));
                }
                let from_snap = state.snap(from).ok_or_else(|| missing(from))?;
                if from_snap.createtxg >= to_snap.createtxg {
                    return Err(zfs_error(
                        command,
                        1,
                        &format!(
                            "warning: cannot send '{to}': not an earlier snapshot from the same fs"
                        ),
                        Subject::Snapshot,
                    ));
                }
                from_snap.guid
            }
        };
        let stream = FakeStream {
            from_guid,
            to_guid: to_snap.guid,
            creation: to_snap.creation,
            from_name: from.map(ToString::to_string).unwrap_or_default(),
            to_name: to.to_string(),
            payload: to_snap.content.clone(),
        };
        Ok(stream.encode())
    }
}

fn not_found(dataset: &DatasetName) -> Error {
    Error::new(
        ErrorKind::DatasetNotFound,
        format!("dataset '{dataset}' does not exist"),
    )
}

impl fmt::Debug for FakeZfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("FakeZfs")
            .field("datasets", &state.datasets.keys().collect::<Vec<_>>())
            .field("calls", &state.calls.len())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Zfs for FakeZfs {
    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<LocalSnapshot>, Error> {
        let mut state = self.lock();
        state.calls.push(format!("list {dataset}"));
        let Some(ds) = state.datasets.get(dataset.as_str()) else {
            return Err(zfs_error(
                format!(
                    "zfs list -H -p -t snapshot -o name,guid,createtxg -s createtxg -d 1 {dataset}"
                ),
                1,
                &format!("cannot open '{dataset}': dataset does not exist"),
                Subject::Dataset,
            ));
        };
        ds.snapshots
            .iter()
            .map(|s| {
                let name = FullSnapshotName::new(
                    dataset.clone(),
                    z3_core::SnapshotName::new(&s.name).map_err(invalid_name)?,
                )
                .map_err(invalid_name)?;
                Ok(LocalSnapshot {
                    name,
                    guid: s.guid,
                    createtxg: s.createtxg,
                    creation: Some(s.creation),
                })
            })
            .collect()
    }

    async fn dataset_exists(&self, dataset: &DatasetName) -> Result<bool, Error> {
        let mut state = self.lock();
        state.calls.push(format!("exists {dataset}"));
        Ok(state.datasets.contains_key(dataset.as_str()))
    }

    async fn list_datasets(&self, root: &DatasetName) -> Result<Vec<DatasetName>, Error> {
        let mut state = self.lock();
        state.calls.push(format!("list -r {root}"));
        if !state.datasets.contains_key(root.as_str()) {
            return Err(Error::new(
                ErrorKind::DatasetNotFound,
                format!("cannot open '{root}': dataset does not exist"),
            ));
        }
        let below = format!("{root}/");
        state
            .datasets
            .keys()
            .filter(|name| *name == root.as_str() || name.starts_with(&below))
            .map(|name| DatasetName::new(name).map_err(invalid_name))
            .collect()
    }

    async fn estimate_send_size(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<SendEstimate, Error> {
        let mut state = self.lock();
        state
            .calls
            .push(format!("estimate {}", display_send(from, to)));
        let stream = Self::check_send(&state, "send -nvP", from, to)?;
        Ok(SendEstimate {
            bytes: stream.len() as u64,
            method: EstimateMethod::Fake,
        })
    }

    async fn send(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<SendStream, Error> {
        self.send_with_flags(from, to, crate::SendFlags::NONE).await
    }

    async fn supported_send_flags(
        &self,
        to: &FullSnapshotName,
        wanted: crate::SendFlags,
    ) -> Result<crate::SendFlags, Error> {
        let state = self.lock();
        Self::check_send(&state, "send -n -P", None, to)?;
        Ok(wanted.both(state.send_flags))
    }

    /// The flags allowed by [`FakeZfs::set_send_flags`]; `probe` need not exist.
    async fn receivable_send_flags(
        &self,
        probe: &FullSnapshotName,
        wanted: crate::SendFlags,
    ) -> Result<crate::SendFlags, Error> {
        let _ = probe;
        Ok(wanted.both(self.lock().send_flags))
    }

    /// As [`Zfs::send`], the flags recorded in [`FakeZfs::calls`] (`send -w -i p/fs@a p/fs@b`);
    /// the stream's bytes do not depend on them. Flags not allowed by
    /// [`FakeZfs::set_send_flags`] fail like zfs's usage error.
    async fn send_with_flags(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
        flags: crate::SendFlags,
    ) -> Result<SendStream, Error> {
        let mut state = self.lock();
        let unsupported = flags.without(state.send_flags);
        if !unsupported.is_empty() {
            return Err(Error::new(
                ErrorKind::CommandFailed,
                format!("zfs send {unsupported}: invalid option (this zfs lacks it)"),
            ));
        }
        let args = display_send(from, to);
        let flag_args: String = flags.args().iter().flat_map(|a| [*a, " "]).collect();
        state.calls.push(format!("send {flag_args}{args}"));
        let stream = Self::check_send(&state, "send", from, to)?;
        let description = format!("zfs send {args}");
        let fail = state.fail_next_send.take();
        if let Some(after) = state.stall_next_send.take() {
            let alive = Arc::clone(&state.stalled_alive);
            drop(state);
            alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let reader = Stalled {
                prefix: io::Cursor::new(stream.slice(..after.min(stream.len()))),
                alive,
            };
            return Ok(SendStream::from_parts(
                reader,
                std::future::pending(),
                description,
            ));
        }
        drop(state);
        Ok(match fail {
            None => SendStream::from_parts(io::Cursor::new(stream), async { Ok(()) }, description),
            Some(after) => {
                let prefix = stream.slice(..after.min(stream.len()));
                let error = Error::from_failure(
                    CommandFailure {
                        command: description.clone(),
                        code: None,
                        status: "signal: 9 (SIGKILL)".to_owned(),
                        stderr: format!("fake send failure injected after {after} bytes"),
                    },
                    Subject::Snapshot,
                );
                SendStream::from_parts(io::Cursor::new(prefix), async { Err(error) }, description)
            }
        })
    }

    async fn receive(
        &self,
        target: &FullSnapshotName,
        options: &ReceiveOptions,
    ) -> Result<ReceiveSink, Error> {
        let flag = if options.force { "-F " } else { "" };
        let description = format!("zfs receive {flag}{target}");
        let mut state = self.lock();
        state.calls.push(format!("receive {flag}{target}"));
        let injected = state.fail_next_receive.take();
        drop(state);
        let shared = Arc::new(Mutex::new(Incoming::default()));
        let (done_tx, done_rx) = oneshot::channel();
        let writer = FakeReceiver {
            fake: self.clone(),
            shared: Arc::clone(&shared),
            target: target.clone(),
            force: options.force,
            command: description.clone(),
            done: Some(done_tx),
        };
        let fake = self.clone();
        let target = target.clone();
        let force = options.force;
        let command = description.clone();
        let completion = async move {
            if done_rx.await.is_err() {
                // The writer was dropped without shutdown: the receive was aborted.
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("`{command}` was aborted before the end of the stream"),
                ));
            }
            let incoming = std::mem::take(
                &mut *shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if let Some(e) = incoming.error {
                return Err(e);
            }
            if let Some(message) = injected {
                return Err(zfs_error(command, 1, &message, Subject::Snapshot));
            }
            let stream = FakeStream::decode(&incoming.bytes).map_err(|e| {
                let incremental = FakeStream::header(&incoming.bytes)
                    .ok()
                    .flatten()
                    .map(|(h, _)| h.from_guid != 0);
                zfs_error(
                    command.clone(),
                    1,
                    &e.stderr(incremental),
                    Subject::Snapshot,
                )
            })?;
            let mut state = fake.lock();
            check_receive(&state, &target, force, &stream)
                .map_err(|stderr| zfs_error(command, 1, &stderr, Subject::Snapshot))?;
            apply_receive(&mut state, &target, stream);
            Ok(())
        };
        Ok(ReceiveSink::from_parts(writer, completion, description))
    }

    async fn hold(&self, snapshot: &FullSnapshotName, tag: &str) -> Result<(), Error> {
        validate_hold_tag(tag)?;
        let mut state = self.lock();
        state.calls.push(format!("hold {tag} {snapshot}"));
        let command = format!("zfs hold {tag} {snapshot}");
        let snap = Self::snap_for_hold(&mut state, snapshot, &command, "cannot hold snapshot")?;
        // Holding again with the same tag is `tag already exists on this dataset`: success.
        snap.holds.insert(tag.to_owned());
        Ok(())
    }

    async fn release(&self, snapshot: &FullSnapshotName, tag: &str) -> Result<(), Error> {
        validate_hold_tag(tag)?;
        let mut state = self.lock();
        state.calls.push(format!("release {tag} {snapshot}"));
        let command = format!("zfs release {tag} {snapshot}");
        let snap = Self::snap_for_hold(
            &mut state,
            snapshot,
            &command,
            "cannot release hold from snapshot",
        )?;
        // Releasing a tag that is not there is `no such tag on this dataset`: success.
        snap.holds.remove(tag);
        Ok(())
    }

    async fn held_snapshots(
        &self,
        dataset: &DatasetName,
        tag: &str,
    ) -> Result<Vec<FullSnapshotName>, Error> {
        validate_hold_tag(tag)?;
        let mut state = self.lock();
        state.calls.push(format!("held {dataset} {tag}"));
        let ds = state
            .datasets
            .get(dataset.as_str())
            .ok_or_else(|| missing_dataset("zfs get", dataset))?;
        ds.snapshots
            .iter()
            .filter(|s| s.holds.contains(tag))
            .map(|s| {
                FullSnapshotName::new(
                    dataset.clone(),
                    z3_core::SnapshotName::new(&s.name).map_err(invalid_name)?,
                )
                .map_err(invalid_name)
            })
            .collect()
    }

    async fn bookmark(
        &self,
        snapshot: &FullSnapshotName,
        bookmark: &FullBookmarkName,
    ) -> Result<(), Error> {
        check_same_dataset(snapshot, bookmark)?;
        let mut state = self.lock();
        state.calls.push(format!("bookmark {snapshot} {bookmark}"));
        let command = format!("zfs bookmark {snapshot} {bookmark}");
        if state.no_bookmarks {
            return Err(bookmarks_unsupported(Some(zfs_error(
                command,
                2,
                "unrecognized command 'bookmark'\nusage: zfs command args ...",
                Subject::Snapshot,
            ))));
        }
        let snap = state.snap(snapshot).cloned().ok_or_else(|| {
            zfs_error(
                command.clone(),
                255,
                &format!("cannot open '{snapshot}': dataset does not exist"),
                Subject::Snapshot,
            )
        })?;
        let ds = state
            .datasets
            .get_mut(snapshot.dataset().as_str())
            .ok_or_else(|| not_found(snapshot.dataset()))?;
        if ds
            .bookmarks
            .iter()
            .any(|b| b.name == bookmark.name().as_str())
        {
            return Err(zfs_error(
                command,
                1,
                &format!("cannot create bookmark '{bookmark}': bookmark exists"),
                Subject::Snapshot,
            ));
        }
        ds.bookmarks.push(Mark {
            name: bookmark.name().as_str().to_owned(),
            guid: snap.guid,
            createtxg: snap.createtxg,
            creation: snap.creation,
        });
        ds.bookmarks.sort_by_key(|b| b.createtxg);
        Ok(())
    }

    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<LocalBookmark>, Error> {
        let mut state = self.lock();
        state.calls.push(format!("bookmarks {dataset}"));
        if state.no_bookmarks {
            return Err(bookmarks_unsupported(None));
        }
        let ds = state
            .datasets
            .get(dataset.as_str())
            .ok_or_else(|| missing_dataset("zfs list -t bookmark", dataset))?;
        ds.bookmarks
            .iter()
            .map(|b| {
                Ok(LocalBookmark {
                    name: FullBookmarkName::new(
                        dataset.clone(),
                        z3_core::SnapshotName::new(&b.name).map_err(invalid_name)?,
                    )?,
                    guid: b.guid,
                    createtxg: b.createtxg,
                    creation: Some(b.creation),
                })
            })
            .collect()
    }

    async fn send_from_bookmark(
        &self,
        from: &FullBookmarkName,
        to: &FullSnapshotName,
    ) -> Result<SendStream, Error> {
        let mut state = self.lock();
        state.calls.push(format!("send -i {from} {to}"));
        if state.no_bookmarks {
            return Err(bookmarks_unsupported(None));
        }
        let command = format!("zfs send -i {from} {to}");
        let missing = |name: &dyn fmt::Display| {
            zfs_error(
                command.clone(),
                1,
                &format!("cannot open '{name}': dataset does not exist"),
                Subject::Snapshot,
            )
        };
        if from.dataset() != to.dataset() {
            return Err(zfs_error(
                command,
                2,
                "incremental source must be in same filesystem",
                Subject::Snapshot,
            ));
        }
        let to_snap = state.snap(to).ok_or_else(|| missing(to))?;
        let mark = state
            .datasets
            .get(from.dataset().as_str())
            .and_then(|d| d.bookmarks.iter().find(|b| b.name == from.name().as_str()))
            .ok_or_else(|| missing(from))?;
        if mark.createtxg >= to_snap.createtxg {
            return Err(zfs_error(
                command,
                1,
                &format!("warning: cannot send '{to}': not an earlier snapshot from the same fs"),
                Subject::Snapshot,
            ));
        }
        let stream = FakeStream {
            from_guid: mark.guid,
            to_guid: to_snap.guid,
            creation: to_snap.creation,
            from_name: from.to_string(),
            to_name: to.to_string(),
            payload: to_snap.content.clone(),
        }
        .encode();
        drop(state);
        Ok(SendStream::from_parts(
            io::Cursor::new(stream),
            async { Ok(()) },
            command,
        ))
    }
}

/// `cannot open '<dataset>': dataset does not exist` from a simulated `command`.
fn missing_dataset(command: &str, dataset: &DatasetName) -> Error {
    zfs_error(
        format!("{command} {dataset}"),
        1,
        &format!("cannot open '{dataset}': dataset does not exist"),
        Subject::Dataset,
    )
}

const FULL_PREFIX: &str = "cannot receive new filesystem stream";
const INCREMENTAL_PREFIX: &str = "cannot receive incremental stream";

/// Checks real `zfs receive` rules; `Err` holds the stderr text `zfs` would print.
fn check_receive(
    state: &State,
    target: &FullSnapshotName,
    force: bool,
    stream: &StreamHeader,
) -> Result<(), String> {
    let dataset = target.dataset();
    let existing = state.datasets.get(dataset.as_str());
    if stream.from_guid == 0 {
        if let Some(ds) = existing {
            if !force {
                return Err(format!(
                    "{FULL_PREFIX}: destination '{dataset}' exists\nmust specify -F to overwrite it"
                ));
            }
            if let Some(first) = ds.snapshots.first() {
                return Err(format!(
                    "{FULL_PREFIX}: destination has snapshots (eg. {dataset}@{})\nmust destroy them to overwrite it",
                    first.name
                ));
            }
            return Ok(());
        }
        let parent = dataset.as_str().rsplit_once('/').map(|(p, _)| p);
        if parent.is_none_or(|p| !state.datasets.contains_key(p)) {
            let missing = parent.unwrap_or(dataset.as_str());
            return Err(format!(
                "cannot open '{missing}': dataset does not exist\n{FULL_PREFIX}: dataset does not exist"
            ));
        }
        return Ok(());
    }
    let Some(ds) = existing else {
        return Err(format!(
            "{INCREMENTAL_PREFIX}: destination '{dataset}' does not exist"
        ));
    };
    // OpenZFS checks the target name before the base (docs/compatibility.md, "`zfs receive` errors").
    if ds
        .snapshots
        .iter()
        .any(|s| s.name == target.snapshot().as_str())
    {
        return Err(format!(
            "cannot restore to {target}: destination already exists"
        ));
    }
    if ds.snapshots.last().map(|s| s.guid) != Some(stream.from_guid) {
        return Err(format!(
            "{INCREMENTAL_PREFIX}: most recent snapshot of {dataset} does not\nmatch incremental source"
        ));
    }
    if ds.modified && !force {
        return Err(format!(
            "{INCREMENTAL_PREFIX}: destination {dataset} has been modified\nsince most recent snapshot"
        ));
    }
    Ok(())
}

fn apply_receive(state: &mut State, target: &FullSnapshotName, stream: FakeStream) {
    let createtxg = state.next();
    let ds = state
        .datasets
        .entry(target.dataset().as_str().to_owned())
        .or_default();
    ds.content = stream.payload.clone();
    ds.modified = false;
    ds.snapshots.push(Snap {
        name: target.snapshot().as_str().to_owned(),
        guid: stream.to_guid,
        createtxg,
        // A received snapshot keeps the sender's creation time (checked on zfs-fuse).
        creation: stream.creation,
        content: stream.payload,
        holds: std::collections::BTreeSet::new(),
    });
}

/// Bytes received so far and an early verdict, shared by the writer and the completion.
#[derive(Default)]
struct Incoming {
    bytes: Vec<u8>,
    header_checked: bool,
    error: Option<Error>,
}

/// The write half of a fake receive. Like a real receiver it checks the header as soon as it
/// has it and then "dies": later writes fail with `BrokenPipe`, and `finish` reports why.
struct FakeReceiver {
    fake: FakeZfs,
    shared: Arc<Mutex<Incoming>>,
    target: FullSnapshotName,
    force: bool,
    command: String,
    done: Option<oneshot::Sender<()>>,
}

impl FakeReceiver {
    fn accept(&self, buf: &[u8]) -> io::Result<usize> {
        let mut incoming = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if incoming.error.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "fake receiver exited",
            ));
        }
        incoming.bytes.extend_from_slice(buf);
        if !incoming.header_checked {
            let verdict = match FakeStream::header(&incoming.bytes) {
                Ok(None) => None,
                Ok(Some((header, _))) => {
                    Some(check_receive(&self.fake.lock(), &self.target, self.force, &header).err())
                }
                Err(e) => Some(Some(e.stderr(None))),
            };
            if let Some(stderr) = verdict {
                incoming.header_checked = true;
                if let Some(stderr) = stderr {
                    incoming.error = Some(zfs_error(
                        self.command.clone(),
                        1,
                        &stderr,
                        Subject::Snapshot,
                    ));
                }
            }
        }
        Ok(buf.len())
    }
}

impl AsyncWrite for FakeReceiver {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.accept(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(done) = self.get_mut().done.take() {
            let _ = done.send(());
        }
        Poll::Ready(Ok(()))
    }
}

/// The fake send stream format.
///
/// Layout (integers big-endian): magic `Z3FAKE\0\x02` (8 bytes), base guid (u64, 0 for a full
/// stream), snapshot guid (u64), payload length (u64), the snapshot's creation time (i64, Unix
/// seconds), source name length (u16) and bytes,
/// base name length (u16) and bytes, payload, FNV-1a 64 checksum of everything before it
/// (u64). The fake's estimate is the exact encoded length: payload plus this overhead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeStream {
    /// Guid of the incremental base, 0 for a full stream.
    pub from_guid: u64,
    /// Guid of the sent snapshot; the received snapshot gets the same one.
    pub to_guid: u64,
    /// Creation time of the sent snapshot (Unix seconds); the received snapshot keeps it.
    pub creation: i64,
    /// Full name of the base, empty for a full stream.
    pub from_name: String,
    /// Full name of the sent snapshot.
    pub to_name: String,
    /// The snapshot's content.
    pub payload: Bytes,
}

type StreamHeader = FakeStream;

/// Why a fake stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FakeStreamError {
    /// No bytes at all.
    #[error("empty stream")]
    Empty,
    /// The first bytes are not the magic number.
    #[error("bad magic number")]
    BadMagic,
    /// The stream ends early.
    #[error("incomplete stream")]
    Truncated,
    /// The checksum does not match, or bytes follow the checksum.
    #[error("checksum mismatch")]
    Checksum,
}

impl FakeStreamError {
    /// What `zfs receive` prints for this problem; `incremental` picks the prefix when known.
    fn stderr(self, incremental: Option<bool>) -> String {
        let prefix = match incremental {
            Some(true) => "cannot receive incremental stream",
            Some(false) => "cannot receive new filesystem stream",
            None => "cannot receive",
        };
        match self {
            Self::Empty => "cannot receive: failed to read from stream".to_owned(),
            Self::BadMagic => "cannot receive: invalid stream (bad magic number)".to_owned(),
            Self::Truncated => format!("{prefix}: invalid stream (incomplete stream)"),
            Self::Checksum => format!("{prefix}: invalid stream (checksum mismatch)"),
        }
    }
}

const MAGIC: &[u8; 8] = b"Z3FAKE\0\x02";
const FIXED_HEADER: usize = 8 + 8 + 8 + 8 + 8 + 2;
const TRAILER: usize = 8;

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl FakeStream {
    /// Encodes the stream. Names longer than `u16::MAX` bytes are cut (ZFS names are ≤255).
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let to = &self.to_name.as_bytes()[..self.to_name.len().min(usize::from(u16::MAX))];
        let from = &self.from_name.as_bytes()[..self.from_name.len().min(usize::from(u16::MAX))];
        let mut out = BytesMut::with_capacity(
            FIXED_HEADER + to.len() + 2 + from.len() + self.payload.len() + TRAILER,
        );
        out.put_slice(MAGIC);
        out.put_u64(self.from_guid);
        out.put_u64(self.to_guid);
        out.put_u64(self.payload.len() as u64);
        out.put_i64(self.creation);
        out.put_u16(to.len() as u16);
        out.put_slice(to);
        out.put_u16(from.len() as u16);
        out.put_slice(from);
        out.put_slice(&self.payload);
        let sum = fnv1a(&out);
        out.put_u64(sum);
        out.freeze()
    }

    /// Parses the header from the start of `data`: `Ok(None)` if more bytes are needed,
    /// otherwise the header (with an empty payload) and its length.
    ///
    /// # Errors
    /// [`FakeStreamError::BadMagic`] as soon as the first bytes differ from the magic number.
    pub fn header(data: &[u8]) -> Result<Option<(Self, usize)>, FakeStreamError> {
        let n = data.len().min(MAGIC.len());
        if data[..n] != MAGIC[..n] {
            return Err(FakeStreamError::BadMagic);
        }
        if data.len() < FIXED_HEADER {
            return Ok(None);
        }
        let to_len = usize::from(u16::from_be_bytes([data[40], data[41]]));
        let from_at = FIXED_HEADER + to_len;
        if data.len() < from_at + 2 {
            return Ok(None);
        }
        let from_len = usize::from(u16::from_be_bytes([data[from_at], data[from_at + 1]]));
        let end = from_at + 2 + from_len;
        if data.len() < end {
            return Ok(None);
        }
        let header = Self {
            from_guid: be_u64(&data[8..]),
            to_guid: be_u64(&data[16..]),
            creation: i64::from_be_bytes(be_u64(&data[32..]).to_be_bytes()),
            to_name: String::from_utf8_lossy(&data[FIXED_HEADER..from_at]).into_owned(),
            from_name: String::from_utf8_lossy(&data[from_at + 2..end]).into_owned(),
            payload: Bytes::new(),
        };
        Ok(Some((header, end)))
    }

    /// Decodes and verifies a complete stream.
    ///
    /// # Errors
    /// [`FakeStreamError`] for an empty, foreign, truncated or corrupted stream (including
    /// bytes after the checksum).
    pub fn decode(data: &[u8]) -> Result<Self, FakeStreamError> {
        if data.is_empty() {
            return Err(FakeStreamError::Empty);
        }
        let (mut stream, header_len) = Self::header(data)?.ok_or(FakeStreamError::Truncated)?;
        let payload_len = usize::try_from(be_u64(&data[24..])).unwrap_or(usize::MAX);
        let end = header_len
            .checked_add(payload_len)
            .and_then(|e| e.checked_add(TRAILER))
            .ok_or(FakeStreamError::Checksum)?;
        if data.len() < end {
            return Err(FakeStreamError::Truncated);
        }
        let body = end - TRAILER;
        if data.len() > end || fnv1a(&data[..body]) != be_u64(&data[body..]) {
            return Err(FakeStreamError::Checksum);
        }
        stream.payload = Bytes::copy_from_slice(&data[header_len..body]);
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn full(name: &str) -> FullSnapshotName {
        FullSnapshotName::parse(name).unwrap()
    }

    fn ds(name: &str) -> DatasetName {
        DatasetName::new(name).unwrap()
    }

    async fn read_all(mut s: SendStream) -> Result<Vec<u8>, Error> {
        let mut v = Vec::new();
        s.read_to_end(&mut v)
            .await
            .map_err(|e| Error::from_io(e, "reading"))?;
        Ok(v)
    }

    async fn receive(zfs: &FakeZfs, target: &str, force: bool, data: &[u8]) -> Result<(), Error> {
        let mut sink = zfs
            .receive(&full(target), &ReceiveOptions { force })
            .await?;
        // Writes may fail once the fake receiver has rejected the header; finish says why.
        let _ = sink.write_all(data).await;
        sink.finish().await
    }

    /// A fake with `p/src@a` ("one") and `p/src@b` ("two").
    fn source() -> FakeZfs {
        let zfs = FakeZfs::new();
        zfs.create_dataset("p/src").unwrap();
        zfs.write("p/src", "one").unwrap();
        zfs.snapshot("p/src@a").unwrap();
        zfs.write("p/src", "two").unwrap();
        zfs.snapshot("p/src@b").unwrap();
        zfs
    }

    async fn send(zfs: &FakeZfs, from: Option<&str>, to: &str) -> Vec<u8> {
        let from = from.map(full);
        read_all(zfs.send(from.as_ref(), &full(to)).await.unwrap())
            .await
            .unwrap()
    }

    #[test]
    fn helpers_validate_and_track_state() {
        let zfs = FakeZfs::new();
        assert_eq!(
            zfs.create_dataset("p/bad!").unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        zfs.create_dataset("p/a/b").unwrap();
        assert!(zfs.exists("p") && zfs.exists("p/a"));
        assert_eq!(
            zfs.create_dataset("p/a").unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            zfs.write("p/none", "x").unwrap_err().kind(),
            ErrorKind::DatasetNotFound
        );
        zfs.write("p/a", "x").unwrap();
        let g1 = zfs.snapshot("p/a@1").unwrap();
        let g2 = zfs.snapshot("p/a@2").unwrap();
        assert_ne!(g1, g2);
        assert_eq!(
            zfs.snapshot("p/a@1").unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(zfs.snapshot_names("p/a"), ["1", "2"]);
        assert_eq!(zfs.snapshot_content("p/a@1").unwrap(), "x");
        zfs.destroy_dataset("p/a").unwrap();
        assert!(!zfs.exists("p/a") && !zfs.exists("p/a/b") && zfs.exists("p"));
        // Deterministic: the same steps give the same guids.
        let other = FakeZfs::new();
        other.create_dataset("q").unwrap();
        assert_eq!(other.snapshot("q@x").unwrap(), g1);
    }

    #[tokio::test]
    async fn send_flags_are_those_allowed_and_recorded_in_the_calls() {
        use crate::SendFlags;
        let zfs = source();
        let plain = send(&zfs, Some("p/src@a"), "p/src@b").await;
        // Like zfs-fuse by default: no flag.
        let all = zfs
            .supported_send_flags(&full("p/src@b"), SendFlags::ALL)
            .await
            .unwrap();
        assert!(all.is_empty());
        let cle = SendFlags::from_metadata("cLe").unwrap();
        let refused = zfs.send_with_flags(None, &full("p/src@b"), cle).await;
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(ErrorKind::CommandFailed)
        );
        // Like OpenZFS 0.7.
        zfs.set_send_flags(cle);
        let supported = zfs
            .supported_send_flags(&full("p/src@b"), SendFlags::ALL)
            .await
            .unwrap();
        assert_eq!(supported, cle);
        let missing = zfs
            .supported_send_flags(&full("p/src@zz"), SendFlags::ALL)
            .await;
        assert_eq!(
            missing.err().map(|e| e.kind()),
            Some(ErrorKind::SnapshotNotFound)
        );
        let flagged = zfs
            .send_with_flags(Some(&full("p/src@a")), &full("p/src@b"), cle)
            .await
            .unwrap();
        assert_eq!(read_all(flagged).await.unwrap(), plain, "same bytes");
        assert!(
            zfs.calls()
                .contains(&"send -c -L -e -i p/src@a p/src@b".to_owned()),
            "{:?}",
            zfs.calls()
        );
    }

    #[tokio::test]
    async fn list_and_exists() {
        let zfs = source();
        let snaps = zfs.list_snapshots(&ds("p/src")).await.unwrap();
        let names: Vec<_> = snaps.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(names, ["p/src@a", "p/src@b"]);
        assert!(snaps[0].createtxg < snaps[1].createtxg);
        let e = zfs.list_snapshots(&ds("p/none")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DatasetNotFound);
        assert_eq!(
            e.stderr(),
            Some("cannot open 'p/none': dataset does not exist")
        );
        assert!(zfs.dataset_exists(&ds("p/src")).await.unwrap());
        assert!(!zfs.dataset_exists(&ds("p/none")).await.unwrap());
        assert_eq!(
            zfs.calls(),
            ["list p/src", "list p/none", "exists p/src", "exists p/none"]
        );
    }

    #[tokio::test]
    async fn estimate_is_the_exact_stream_length() {
        let zfs = source();
        let est = zfs
            .estimate_send_size(None, &full("p/src@b"))
            .await
            .unwrap();
        assert_eq!(est.method, EstimateMethod::Fake);
        let stream = send(&zfs, None, "p/src@b").await;
        assert_eq!(est.bytes, stream.len() as u64);
        assert_eq!(
            est.bytes as usize,
            3 + FIXED_HEADER + "p/src@b".len() + 2 + TRAILER
        );
        let e = zfs
            .estimate_send_size(Some(&full("p/src@b")), &full("p/src@a"))
            .await
            .unwrap_err();
        assert!(
            e.stderr().unwrap().contains("not an earlier snapshot"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn send_errors_mirror_zfs() {
        let zfs = source();
        let e = zfs.send(None, &full("p/src@zz")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SnapshotNotFound);
        assert_eq!(
            e.stderr(),
            Some("cannot open 'p/src@zz': dataset does not exist")
        );
        let e = zfs
            .send(Some(&full("p/src@zz")), &full("p/src@b"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SnapshotNotFound);
        zfs.create_dataset("p/other").unwrap();
        zfs.snapshot("p/other@a").unwrap();
        let e = zfs
            .send(Some(&full("p/other@a")), &full("p/src@b"))
            .await
            .unwrap_err();
        assert_eq!(e.command().unwrap().code, Some(2));
    }

    #[tokio::test]
    async fn full_and_incremental_round_trip_keep_guids() {
        let zfs = source();
        zfs.create_dataset("p/dst-parent").unwrap();
        let full_a = send(&zfs, None, "p/src@a").await;
        receive(&zfs, "p/dst-parent/dst@a", false, &full_a)
            .await
            .unwrap();
        assert_eq!(zfs.content("p/dst-parent/dst").unwrap(), "one");
        let inc = send(&zfs, Some("p/src@a"), "p/src@b").await;
        receive(&zfs, "p/dst-parent/dst@b", false, &inc)
            .await
            .unwrap();
        assert_eq!(zfs.content("p/dst-parent/dst").unwrap(), "two");
        let src = zfs.list_snapshots(&ds("p/src")).await.unwrap();
        let dst = zfs.list_snapshots(&ds("p/dst-parent/dst")).await.unwrap();
        let guids = |v: &[LocalSnapshot]| v.iter().map(|s| s.guid).collect::<Vec<_>>();
        assert_eq!(guids(&src), guids(&dst));
        assert!(zfs.calls().contains(&"send -i p/src@a p/src@b".to_owned()));
        assert!(
            zfs.calls()
                .contains(&"receive p/dst-parent/dst@b".to_owned())
        );
    }

    #[tokio::test]
    async fn full_receive_rules() {
        let zfs = source();
        let full_a = send(&zfs, None, "p/src@a").await;
        let full_b = send(&zfs, None, "p/src@b").await;
        // Existing destination without force.
        zfs.create_dataset("p/dst").unwrap();
        let e = receive(&zfs, "p/dst@a", false, &full_a).await.unwrap_err();
        assert_eq!(
            e.stderr(),
            Some(
                "cannot receive new filesystem stream: destination 'p/dst' exists\nmust specify -F to overwrite it"
            )
        );
        // With force and no snapshots: overwritten.
        receive(&zfs, "p/dst@a", true, &full_a).await.unwrap();
        assert_eq!(zfs.content("p/dst").unwrap(), "one");
        // With force and snapshots: refused.
        let e = receive(&zfs, "p/dst@b", true, &full_b).await.unwrap_err();
        assert!(
            e.stderr().unwrap().starts_with(
                "cannot receive new filesystem stream: destination has snapshots (eg. p/dst@a)"
            ),
            "{e}"
        );
        // Missing parent.
        let e = receive(&zfs, "p/no/child@a", false, &full_a)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DatasetNotFound);
        assert!(!zfs.exists("p/no/child"));
        assert_eq!(
            zfs.calls().last().map(String::as_str),
            Some("receive p/no/child@a")
        );
    }

    #[tokio::test]
    async fn incremental_receive_rules() {
        let zfs = source();
        zfs.snapshot("p/src@c").unwrap();
        let full_a = send(&zfs, None, "p/src@a").await;
        let inc_ab = send(&zfs, Some("p/src@a"), "p/src@b").await;
        let inc_bc = send(&zfs, Some("p/src@b"), "p/src@c").await;
        // Destination missing.
        let e = receive(&zfs, "p/dst@b", false, &inc_ab).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DatasetNotFound);
        assert_eq!(
            e.stderr(),
            Some("cannot receive incremental stream: destination 'p/dst' does not exist")
        );
        receive(&zfs, "p/dst@a", false, &full_a).await.unwrap();
        // Wrong base.
        let e = receive(&zfs, "p/dst@c", false, &inc_bc).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CommandFailed);
        assert!(
            e.stderr()
                .unwrap()
                .contains("does not\nmatch incremental source")
        );
        // Target name exists.
        zfs.snapshot("p/dst@b").unwrap();
        let e = receive(&zfs, "p/dst@b", false, &inc_ab).await.unwrap_err();
        assert_eq!(
            e.stderr(),
            Some("cannot restore to p/dst@b: destination already exists")
        );
        // Modified since the latest snapshot.
        let zfs2 = source();
        let full_a = send(&zfs2, None, "p/src@a").await;
        let inc_ab = send(&zfs2, Some("p/src@a"), "p/src@b").await;
        receive(&zfs2, "p/dst@a", false, &full_a).await.unwrap();
        zfs2.write("p/dst", "local change").unwrap();
        let e = receive(&zfs2, "p/dst@b", false, &inc_ab).await.unwrap_err();
        assert!(e.stderr().unwrap().contains("has been modified"), "{e}");
        // Force rolls back and succeeds.
        receive(&zfs2, "p/dst@b", true, &inc_ab).await.unwrap();
        assert_eq!(zfs2.content("p/dst").unwrap(), "two");
        assert_eq!(zfs2.snapshot_names("p/dst"), ["a", "b"]);
    }

    #[tokio::test]
    async fn corrupt_truncated_and_foreign_streams_are_invalid() {
        let zfs = source();
        let stream = send(&zfs, None, "p/src@a").await;
        let mut corrupt = stream.clone();
        let mid = corrupt.len() - TRAILER - 1;
        corrupt[mid] ^= 0xff;
        for (data, needle) in [
            (&stream[..stream.len() - 1], "incomplete stream"),
            (&corrupt[..], "checksum mismatch"),
            (&b"not a stream at all"[..], "bad magic number"),
            (&b""[..], "failed to read from stream"),
        ] {
            let e = receive(&zfs, "p/dst@a", false, data).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidStream, "{e}");
            assert!(e.stderr().unwrap().contains(needle), "{e}");
            assert!(!zfs.exists("p/dst"));
        }
        let mut trailing = stream.clone();
        trailing.push(0);
        assert_eq!(
            FakeStream::decode(&trailing).unwrap_err(),
            FakeStreamError::Checksum
        );
    }

    #[tokio::test]
    async fn rejected_header_breaks_the_pipe_and_finish_explains() {
        let zfs = source();
        zfs.create_dataset("p/dst").unwrap();
        let stream = send(&zfs, None, "p/src@a").await;
        let mut sink = zfs
            .receive(&full("p/dst@a"), &ReceiveOptions::default())
            .await
            .unwrap();
        // The first write delivers the header and is accepted; the receiver then "dies".
        sink.write_all(&stream[..60]).await.unwrap();
        let e = sink.write_all(&stream[60..]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        let e = sink.finish().await.unwrap_err();
        assert!(e.stderr().unwrap().contains("must specify -F"), "{e}");
    }

    #[tokio::test]
    async fn dropped_sink_commits_nothing() {
        let zfs = source();
        let stream = send(&zfs, None, "p/src@a").await;
        let mut sink = zfs
            .receive(&full("p/dst@a"), &ReceiveOptions::default())
            .await
            .unwrap();
        sink.write_all(&stream).await.unwrap();
        drop(sink);
        assert!(!zfs.exists("p/dst"));
    }

    #[tokio::test]
    async fn injected_send_failure_yields_a_prefix_then_an_error() {
        let zfs = source();
        let whole = send(&zfs, None, "p/src@a").await;
        zfs.fail_next_send(10);
        let mut s = zfs.send(None, &full("p/src@a")).await.unwrap();
        let mut got = Vec::new();
        let e = s.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(got, whole[..10]);
        let e = Error::from_io(e, "reading");
        assert_eq!(e.kind(), ErrorKind::CommandFailed);
        assert_eq!(e.command().unwrap().code, None);
        // Only the next send fails.
        assert_eq!(send(&zfs, None, "p/src@a").await, whole);
    }

    #[tokio::test]
    async fn injected_receive_failure_commits_nothing() {
        let zfs = source();
        let stream = send(&zfs, None, "p/src@a").await;
        zfs.fail_next_receive("cannot receive new filesystem stream: out of space");
        let e = receive(&zfs, "p/dst@a", false, &stream).await.unwrap_err();
        assert_eq!(
            e.stderr(),
            Some("cannot receive new filesystem stream: out of space")
        );
        assert!(!zfs.exists("p/dst"));
        receive(&zfs, "p/dst@a", false, &stream).await.unwrap();
        assert!(zfs.exists("p/dst"));
    }

    #[tokio::test]
    async fn held_snapshots_refuse_every_way_of_destroying_them() {
        let zfs = source();
        zfs.create_dataset("p/src/kid").unwrap();
        zfs.snapshot("p/src/kid@k").unwrap();
        zfs.hold(&full("p/src@a"), "z3").await.unwrap();
        zfs.hold(&full("p/src/kid@k"), "z3").await.unwrap();
        assert_eq!(zfs.holds("p/src@a"), ["z3"]);

        let e = zfs.destroy_snapshot("p/src@a").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert_eq!(
            e.stderr(),
            Some("cannot destroy snapshot p/src@a: dataset is busy")
        );
        // A rollback that would destroy a held later snapshot, and a recursive destroy that
        // would take a held descendant's snapshot, change nothing.
        zfs.rollback("p/src@b").unwrap();
        zfs.hold(&full("p/src@b"), "z3").await.unwrap();
        let e = zfs.rollback("p/src@a").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert_eq!(zfs.snapshot_names("p/src"), ["a", "b"]);
        zfs.release(&full("p/src@a"), "z3").await.unwrap();
        zfs.release(&full("p/src@b"), "z3").await.unwrap();
        let e = zfs.destroy_dataset("p/src").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert!(e.stderr().unwrap().contains("p/src/kid@k"), "{e}");
        assert!(zfs.exists("p/src/kid"));
        zfs.release(&full("p/src/kid@k"), "z3").await.unwrap();
        zfs.destroy_dataset("p/src").unwrap();
        assert!(!zfs.exists("p/src/kid"));
    }

    #[tokio::test]
    async fn clock_sets_creation_and_receive_keeps_it() {
        let zfs = FakeZfs::new();
        zfs.create_dataset("p/src").unwrap();
        zfs.snapshot("p/src@a").unwrap();
        zfs.snapshot_at("p/src@b", 1_796_425_946).unwrap();
        zfs.snapshot("p/src@c").unwrap();
        let listed = zfs.list_snapshots(&ds("p/src")).await.unwrap();
        let times: Vec<_> = listed.iter().map(|s| s.creation).collect();
        assert_eq!(
            times,
            [
                Some(DEFAULT_CLOCK),
                Some(1_796_425_946),
                Some(1_796_425_947)
            ]
        );
        let stream = send(&zfs, None, "p/src@b").await;
        receive(&zfs, "p/dst@b", false, &stream).await.unwrap();
        let received = zfs.list_snapshots(&ds("p/dst")).await.unwrap();
        assert_eq!(received[0].creation, Some(1_796_425_946));
    }

    #[test]
    fn stream_codec_round_trip_and_partial_headers() {
        let s = FakeStream {
            from_guid: 7,
            to_guid: 9,
            creation: -5,
            from_name: "p/a b@x".into(),
            to_name: "p/a b@y".into(),
            payload: Bytes::from_static(b"payload"),
        };
        let enc = s.encode();
        assert_eq!(FakeStream::decode(&enc).unwrap(), s);
        for cut in 0..enc.len() {
            assert!(FakeStream::decode(&enc[..cut]).is_err());
            if let Ok(Some((h, len))) = FakeStream::header(&enc[..cut]) {
                assert_eq!((h.from_guid, h.to_guid, h.creation), (7, 9, -5));
                assert!(len <= cut);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = FakeStream::decode(&data);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&data);
            let _ = FakeStream::decode(&with_magic);
            let _ = FakeStream::header(&with_magic);
        }
    }
}

//! The backup lock: an S3 object created with `If-None-Match: *`, renewed while the backup runs
//! and deleted at the end. See [`z3_core::LockRecord`] for its content and docs/operations.md
//! for how to break a stale one.
//!
//! Every change after the create is conditional on the ETag this run last saw or wrote, so the
//! server decides races atomically: a stale lock is taken over with `If-Match: <its ETag>` (of
//! two runs, one wins), renewed with `If-Match: <our ETag>` (a renewal after a break or a
//! release fails instead of bringing the lock back) and released with a `DELETE` `If-Match:
//! <our ETag>` (a lock another run took in between stays). A record read torn, short, or from
//! an object replaced during the read (the `GET` is pinned to the `HEAD`'s ETag) counts as
//! held. On a server that ignores `If-Match` the owner checks by reading (before renewing and
//! releasing, and after a takeover) remain, with their smaller windows.

use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use std::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use z3_core::{Holder, LockRecord};

use crate::clock::{Clock, SystemClock};

use z3_s3::{ErrorKind, ObjectStore, PutOptions};

use crate::config::SMALL_OBJECTS_STORAGE_CLASS;

/// How long a lock holds without renewal by default; it is renewed every third of that.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_mins(15);

/// Another run holds the lock (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LockedError(pub String);

/// A lock this process holds. [`HeldLock::release`] deletes it; if it is dropped instead (a
/// crash), it expires after its TTL.
pub struct HeldLock {
    store: Arc<dyn ObjectStore>,
    key: String,
    owner: String,
    /// The ETag of our record as last written (`None` from a server that sends none).
    etag: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    renewal: JoinHandle<()>,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLock")
            .field("key", &self.key)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// A random id for this run (std's per-process random hash keys; not secret, only unique).
fn new_owner() -> String {
    let random = RandomState::new().hash_one((std::process::id(), SystemTime::now()));
    format!("{random:016x}")
}

/// A lock record and the ETag of the object it was read from.
#[derive(Debug)]
struct Seen {
    record: LockRecord,
    etag: Option<String>,
}

/// Reads the lock record at `key`; `Ok(None)` if there is none. Retried like every read of the
/// bucket (a single 503 on the holder's record must not turn into "the lock cannot be read"
/// while its holder is alive). The `GET` is pinned to the `HEAD`'s ETag and must return the
/// whole record, so a record replaced or cut short during the read is an error (which callers
/// count as held), never a torn record that parses into an early expiry.
async fn read(store: &dyn ObjectStore, key: &str) -> Result<Option<Seen>> {
    let retry = z3_s3::RetryConfig::default();
    let info = match z3_s3::head_with_retry(store, key, &retry).await {
        Ok(info) => info,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    if info.size > MAX_LOCK_BYTES {
        bail!(
            "the lock record is {} bytes, more than a lock record",
            info.size
        );
    }
    let etag = info.etag.as_deref();
    let body = z3_s3::retry(&retry, "get", || async {
        let mut pieces = Vec::new();
        store
            .read_range(key, 0..info.size, etag, &mut pieces)
            .await?;
        Ok(pieces.concat())
    })
    .await;
    let body = match body {
        Ok(body) => body,
        // Released between HEAD and GET.
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        // A pinned read of a record that was replaced in between (HTTP 412).
        Err(err) if etag.is_some() && err.kind() == ErrorKind::AlreadyExists => {
            bail!("the lock record changed while it was read")
        }
        Err(err) => return Err(err.into()),
    };
    if body.len() as u64 != info.size {
        bail!(
            "the lock record was cut short at {} of {} bytes",
            body.len(),
            info.size
        );
    }
    let record = LockRecord::parse(&String::from_utf8_lossy(&body))?;
    Ok(Some(Seen {
        record,
        etag: info.etag,
    }))
}

/// Whether a conditional write or delete (`If-Match` on the ETag we read or wrote) failed
/// because the lock object is no longer that one: another ETag (HTTP 412) or none at all
/// (AWS answers 404 to `If-Match` on a missing key).
fn lost_condition(err: &z3_s3::Error) -> bool {
    matches!(err.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound)
}

/// A lock record is a few hundred bytes.
const MAX_LOCK_BYTES: u64 = 64 << 10;

/// Which lock to take, and how.
#[derive(Debug, Clone)]
pub struct LockRequest<'a> {
    /// The lock object's key.
    pub key: &'a str,
    /// `s3://bucket/key`, for messages.
    pub url: &'a str,
    /// What it protects (the dataset), for messages.
    pub what: &'a str,
    /// How long it holds without renewal.
    pub ttl: Duration,
    /// Remove any existing lock first (`--break-lock`).
    pub break_lock: bool,
}

/// Takes the lock, or fails with [`LockedError`] naming the holder. A stale lock (its holder
/// stopped renewing it) is taken over with a warning on `err_out`, by replacing exactly the
/// stale record read (`If-Match`); `break_lock` removes any lock first. `lost` is cancelled if
/// the lock is taken from us while we hold it.
///
/// # Errors
/// [`LockedError`] if another run holds it (or its record cannot be read whole); S3 errors.
pub async fn acquire(
    store: &Arc<dyn ObjectStore>,
    request: &LockRequest<'_>,
    lost: CancellationToken,
    err_out: &mut dyn Write,
) -> Result<HeldLock> {
    acquire_with_clock(store, request, Arc::new(SystemClock), lost, err_out).await
}

/// [`acquire`], with the time from `clock` (whether the holder's record is stale, when ours
/// expires).
///
/// # Errors
/// As [`acquire`].
pub async fn acquire_with_clock(
    store: &Arc<dyn ObjectStore>,
    request: &LockRequest<'_>,
    clock: Arc<dyn Clock>,
    lost: CancellationToken,
    err_out: &mut dyn Write,
) -> Result<HeldLock> {
    let LockRequest {
        key,
        url,
        what,
        ttl,
        break_lock,
    } = *request;
    if break_lock {
        match read(store.as_ref(), key).await {
            Ok(Some(holder)) => {
                writeln!(err_out, "breaking the lock {url} held by {}", holder.record)?;
            }
            Ok(None) => {}
            Err(err) => writeln!(err_out, "breaking the lock {url} ({err:#})")?,
        }
        store
            .delete(key)
            .await
            .with_context(|| format!("cannot delete the lock {url}"))?;
    }
    let owner = new_owner();
    let here = this_process();
    for attempt in 0..3 {
        let now = clock.unix_secs();
        let record = LockRecord {
            owner: owner.clone(),
            host: host_name(),
            pid: std::process::id(),
            acquired: now,
            expires: now + ttl.as_secs(),
            process: here.clone(),
        };
        let create = PutOptions {
            if_none_match: true,
            storage_class: Some(SMALL_OBJECTS_STORAGE_CLASS.to_owned()),
            ..PutOptions::default()
        };
        match store.put(key, Bytes::from(record.to_text()), &create).await {
            Ok(etag) => return Ok(hold(store, key, record, etag, ttl, lost, clock)),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot take the backup lock {url}"));
            }
        }
        match read(store.as_ref(), key).await {
            // Released between our attempt and the read: try again.
            Ok(None) => {}
            Ok(Some(holder))
                if attempt < 2
                    && let Some(why) =
                        takeover_reason(&holder.record, clock.unix_secs(), here.as_ref()) =>
            {
                writeln!(
                    err_out,
                    "taking over the {why} lock {url} of {}",
                    holder.record
                )?;
                if let Some(etag) = take_over(store.as_ref(), key, &holder, &record, url).await? {
                    return Ok(hold(store, key, record, etag, ttl, lost, clock));
                }
                // Another run replaced the stale record first: look again.
            }
            Ok(Some(holder)) => bail!(LockedError(format!(
                "another z3 backup of {what} holds the lock {url}: {}; if that run is gone, \
                 wait until the lock expires or run `z3 backup --break-lock`",
                holder.record
            ))),
            Err(err) => bail!(LockedError(format!(
                "the lock {url} exists but cannot be read ({err:#}); if no backup is running, \
                 run `z3 backup --break-lock`"
            ))),
        }
    }
    bail!(LockedError(format!(
        "cannot take the lock {url}: it keeps changing hands"
    )))
}

/// Why the lock `record` may be taken over, if it may: it is stale (its holder stopped
/// renewing it), or its holder ran on this machine and is gone (a crash, `kill -9`, a reboot),
/// so a rerun need not wait for the expiry.
fn takeover_reason(record: &LockRecord, now: u64, here: Option<&Holder>) -> Option<&'static str> {
    if record.is_stale(now) {
        return Some("stale");
    }
    let gone = here.is_some_and(|here| {
        record.is_abandoned(here, |pid, start| process_start(pid) == Some(start))
    });
    gone.then_some("abandoned")
}

/// This process as a lock record names it: the machine's and the boot's id and the process's
/// start time; `None` on a machine without a machine id (then only expiry frees a lock this run
/// leaves behind).
#[must_use]
pub fn this_process() -> Option<Holder> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    Some(Holder {
        machine: read("/etc/machine-id").or_else(|| read("/var/lib/dbus/machine-id"))?,
        boot: read("/proc/sys/kernel/random/boot_id")?,
        start: process_start(std::process::id())?,
    })
}

/// When process `pid` started, in clock ticks after boot (`/proc/<pid>/stat`, field 22), if
/// such a process exists.
#[must_use]
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and ')': count the
    // fields after the last ')', where field 3 comes first.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Replaces the stale record `holder` with ours, only if the key still holds exactly that
/// object (`If-Match`); returns our ETag, or `None` when another run changed the key first.
/// A server without ETags gets the old delete-and-create, which two runs can both win.
async fn take_over(
    store: &dyn ObjectStore,
    key: &str,
    holder: &Seen,
    record: &LockRecord,
    url: &str,
) -> Result<Option<String>> {
    let body = Bytes::from(record.to_text());
    let Some(stale) = &holder.etag else {
        tracing::warn!(
            key,
            "the server sends no ETag: the stale lock is deleted and created again, which is not atomic"
        );
        store
            .delete(key)
            .await
            .with_context(|| format!("cannot delete the lock {url}"))?;
        let create = PutOptions {
            if_none_match: true,
            storage_class: Some(SMALL_OBJECTS_STORAGE_CLASS.to_owned()),
            ..PutOptions::default()
        };
        return match store.put(key, body, &create).await {
            Ok(etag) => Ok(Some(etag)),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(None),
            Err(err) => Err(err).with_context(|| format!("cannot take the backup lock {url}")),
        };
    };
    let replace = PutOptions {
        if_match: Some(stale.clone()),
        storage_class: Some(SMALL_OBJECTS_STORAGE_CLASS.to_owned()),
        ..PutOptions::default()
    };
    let etag = match store.put(key, body, &replace).await {
        Ok(etag) => etag,
        Err(err) if lost_condition(&err) => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot take over the backup lock {url}"));
        }
    };
    // Read back: on a server that ignores If-Match, a run that replaced the record after us
    // shows here (the window is smaller, not closed).
    match read(store, key).await {
        Ok(Some(now)) if now.record.owner == record.owner => Ok(Some(etag)),
        Ok(_) => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read back the backup lock {url}")),
    }
}

/// Starts renewing the lock we just wrote (ETag `etag`).
fn hold(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    record: LockRecord,
    etag: String,
    ttl: Duration,
    lost: CancellationToken,
    clock: Arc<dyn Clock>,
) -> HeldLock {
    let owner = record.owner.clone();
    let etag = Arc::new(Mutex::new(Some(etag).filter(|e| !e.is_empty())));
    let stop = CancellationToken::new();
    let renewal = tokio::spawn(renew(
        Renewal {
            store: Arc::clone(store),
            key: key.to_owned(),
            etag: Arc::clone(&etag),
            stop: stop.clone(),
            lost,
            clock,
        },
        record,
        ttl,
    ));
    HeldLock {
        store: Arc::clone(store),
        key: key.to_owned(),
        owner,
        etag,
        stop,
        renewal,
    }
}

/// What the renewal task shares with its [`HeldLock`].
struct Renewal {
    store: Arc<dyn ObjectStore>,
    key: String,
    etag: Arc<Mutex<Option<String>>>,
    /// Cancelled by [`HeldLock::release`]; checked between renewals, never mid-request.
    stop: CancellationToken,
    lost: CancellationToken,
    clock: Arc<dyn Clock>,
}

fn current(etag: &Mutex<Option<String>>) -> Option<String> {
    etag.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Renews the lock every third of its TTL while it is still ours, with `If-Match` on the ETag
/// we last wrote; cancels `lost` if another run took it or it was broken (the conditional
/// renewal then fails and writes nothing).
async fn renew(renewal: Renewal, mut record: LockRecord, ttl: Duration) {
    let Renewal {
        store,
        key,
        etag,
        stop,
        lost,
        clock,
    } = renewal;
    let lose = |holder: String| {
        tracing::error!(key, %holder, "the backup lock was taken from this run; stopping");
        lost.cancel();
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(ttl / 3) => {}
        }
        match read(store.as_ref(), &key).await {
            Ok(Some(current)) if current.record.owner == record.owner => {}
            Ok(holder) => {
                lose(holder.map_or_else(|| "nobody".to_owned(), |h| h.record.to_string()));
                return;
            }
            Err(err) => {
                tracing::warn!(key, error = %format!("{err:#}"), "cannot read the backup lock to renew it");
                continue;
            }
        }
        record.expires = clock.unix_secs() + ttl.as_secs();
        let options = PutOptions {
            if_match: current(&etag),
            storage_class: Some(SMALL_OBJECTS_STORAGE_CLASS.to_owned()),
            ..PutOptions::default()
        };
        match store
            .put(&key, Bytes::from(record.to_text()), &options)
            .await
        {
            Ok(new) => {
                *etag
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(new).filter(|e| !e.is_empty());
            }
            Err(err) if lost_condition(&err) => {
                lose("another run, or nobody (the lock was broken)".to_owned());
                return;
            }
            Err(err) => tracing::warn!(key, error = %err, "cannot renew the backup lock"),
        }
    }
}

impl HeldLock {
    /// Stops renewing (waiting for a renewal in flight, so none can land after the delete)
    /// and deletes the lock only if it still is the record we last wrote (`If-Match`).
    pub async fn release(self) {
        self.stop.cancel();
        if let Err(err) = self.renewal.await {
            tracing::warn!(key = self.key, error = %err, "the lock renewal task failed");
        }
        match read(self.store.as_ref(), &self.key).await {
            Ok(Some(current)) if current.record.owner == self.owner => {}
            Ok(_) => {
                tracing::warn!(
                    key = self.key,
                    "the backup lock was no longer ours at the end"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(key = self.key, error = %format!("{err:#}"), "cannot read the backup lock to release it");
                return;
            }
        }
        let result = match current(&self.etag) {
            Some(etag) => self.store.delete_if_match(&self.key, &etag).await,
            None => self.store.delete(&self.key).await,
        };
        match result {
            Ok(()) => {}
            Err(err) if lost_condition(&err) => tracing::warn!(
                key = self.key,
                "the backup lock was taken by another run as it was released; it stays"
            ),
            Err(err) => {
                tracing::warn!(key = self.key, error = %err, "cannot delete the backup lock; it expires by itself");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    use crate::clock::ManualClock;

    /// Staleness is judged by the injected clock, not the machine's: a lock that expires at
    /// second 1,100 holds at second 1,000 and is taken over at second 1,200.
    #[tokio::test]
    async fn staleness_follows_the_injected_clock() {
        let memory = z3_s3::MemoryStore::new("b");
        let store: Arc<dyn ObjectStore> = Arc::new(memory.clone());
        let other = LockRecord {
            owner: "someone-else".into(),
            host: "h".into(),
            pid: 1,
            acquired: 1_000,
            expires: 1_100,
            process: None,
        };
        store
            .put("l", Bytes::from(other.to_text()), &PutOptions::default())
            .await
            .unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
        let request = LockRequest {
            key: "l",
            url: "s3://b/l",
            what: "pool/fs",
            ttl: Duration::from_mins(1),
            break_lock: false,
        };
        let mut notes = Vec::new();
        let held = acquire_with_clock(
            &store,
            &request,
            Arc::new(clock.clone()),
            CancellationToken::new(),
            &mut notes,
        )
        .await;
        let err = held.expect_err("a live lock was taken");
        assert!(err.is::<LockedError>(), "{err:#}");

        clock.advance(Duration::from_secs(200));
        let held = acquire_with_clock(
            &store,
            &request,
            Arc::new(clock.clone()),
            CancellationToken::new(),
            &mut notes,
        )
        .await
        .unwrap();
        let notes = String::from_utf8(notes).unwrap();
        assert!(notes.contains("taking over the stale lock"), "{notes}");
        let record = read(store.as_ref(), "l").await.unwrap().unwrap().record;
        assert_eq!(record.acquired, 1_200);
        assert_eq!(record.expires, 1_260);
        // Taken over, and (below) taken fresh: the record is in STANDARD either way.
        assert_eq!(memory.object("l").unwrap().2.as_deref(), Some("STANDARD"));
        held.release().await;
        let held = acquire_with_clock(
            &store,
            &request,
            Arc::new(clock.clone()),
            CancellationToken::new(),
            &mut Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(memory.object("l").unwrap().2.as_deref(), Some("STANDARD"));
        held.release().await;
    }
}

//! The backup lock: an S3 object created with `If-None-Match: *`, renewed while the backup runs
//! and deleted at the end. See [`z3_core::LockRecord`] for its content and docs/operations.md
//! for how to break a stale one.

use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use z3_core::LockRecord;
use z3_s3::{ErrorKind, ObjectStore, PutOptions};

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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

/// Reads the lock record at `key`; `Ok(None)` if there is none.
async fn read(store: &dyn ObjectStore, key: &str) -> Result<Option<LockRecord>> {
    // Retried like every read of the bucket: a single 503 on the holder's record must not
    // turn into "the lock cannot be read, run --break-lock" while its holder is alive.
    match z3_s3::read_small(store, key, MAX_LOCK_BYTES, &z3_s3::RetryConfig::default()).await? {
        Some(body) => Ok(Some(LockRecord::parse(&String::from_utf8_lossy(&body))?)),
        None => Ok(None),
    }
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
/// stopped renewing it) is taken over with a warning on `err_out`; `break_lock` removes any lock
/// first. `lost` is cancelled if the lock is taken from us while we hold it.
///
/// # Errors
/// [`LockedError`] if another run holds it; S3 errors.
pub async fn acquire(
    store: &Arc<dyn ObjectStore>,
    request: &LockRequest<'_>,
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
            Ok(Some(holder)) => writeln!(err_out, "breaking the lock {url} held by {holder}")?,
            Ok(None) => {}
            Err(err) => writeln!(err_out, "breaking the lock {url} ({err:#})")?,
        }
        store
            .delete(key)
            .await
            .with_context(|| format!("cannot delete the lock {url}"))?;
    }
    let owner = new_owner();
    let options = PutOptions {
        if_none_match: true,
        ..PutOptions::default()
    };
    for attempt in 0..3 {
        let now = unix_now();
        let record = LockRecord {
            owner: owner.clone(),
            host: host_name(),
            pid: std::process::id(),
            acquired: now,
            expires: now + ttl.as_secs(),
        };
        match store
            .put(key, Bytes::from(record.to_text()), &options)
            .await
        {
            Ok(_) => {
                let renewal =
                    tokio::spawn(renew(Arc::clone(store), key.to_owned(), record, ttl, lost));
                return Ok(HeldLock {
                    store: Arc::clone(store),
                    key: key.to_owned(),
                    owner,
                    renewal,
                });
            }
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot take the backup lock {url}"));
            }
        }
        match read(store.as_ref(), key).await {
            // Released between our attempt and the read: try again.
            Ok(None) => {}
            Ok(Some(holder)) if holder.is_stale(unix_now()) && attempt < 2 => {
                writeln!(err_out, "taking over the stale lock {url} of {holder}")?;
                store
                    .delete(key)
                    .await
                    .with_context(|| format!("cannot delete the lock {url}"))?;
            }
            Ok(Some(holder)) => bail!(LockedError(format!(
                "another z3 backup of {what} holds the lock {url}: {holder}; if that run is gone, \
                 wait until the lock expires or run `z3 backup --break-lock`"
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

/// Renews the lock every third of its TTL while it is still ours; cancels `lost` if another run
/// took it.
async fn renew(
    store: Arc<dyn ObjectStore>,
    key: String,
    mut record: LockRecord,
    ttl: Duration,
    lost: CancellationToken,
) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match read(store.as_ref(), &key).await {
            Ok(Some(current)) if current.owner == record.owner => {}
            Ok(holder) => {
                let holder = holder.map_or_else(|| "nobody".to_owned(), |h| h.to_string());
                tracing::error!(key, %holder, "the backup lock was taken from this run; stopping");
                lost.cancel();
                return;
            }
            Err(err) => {
                tracing::warn!(key, error = %err, "cannot read the backup lock to renew it");
                continue;
            }
        }
        record.expires = unix_now() + ttl.as_secs();
        if let Err(err) = store
            .put(&key, Bytes::from(record.to_text()), &PutOptions::default())
            .await
        {
            tracing::warn!(key, error = %err, "cannot renew the backup lock");
        }
    }
}

impl HeldLock {
    /// Stops renewing and deletes the lock if it is still ours.
    pub async fn release(self) {
        self.renewal.abort();
        match read(self.store.as_ref(), &self.key).await {
            Ok(Some(current)) if current.owner == self.owner => {
                if let Err(err) = self.store.delete(&self.key).await {
                    tracing::warn!(key = self.key, error = %err, "cannot delete the backup lock; it expires by itself");
                }
            }
            Ok(_) => tracing::warn!(
                key = self.key,
                "the backup lock was no longer ours at the end"
            ),
            Err(err) => {
                tracing::warn!(key = self.key, error = %err, "cannot read the backup lock to release it");
            }
        }
    }
}

//! Aborting multipart uploads left open (`z3_mp_cleanup`): the ones old enough, except those a
//! live backup lock may still be writing.
//!
//! z3 aborts its own failed uploads, but some cannot be aborted: a process killed with SIGKILL, a
//! second Ctrl-C, a server unreachable until z3 gave up. Their parts stay stored and billed until
//! aborted. Younger uploads may belong to a backup still running and are left alone; so are
//! uploads whose start time the server does not report, and uploads whose key is covered by a live
//! backup lock (`<prefix>.z3-locks/<dataset>`): a backup of a large dataset can run for days, and
//! aborting its upload would lose that night's backup. A lock is live unless its record is stale by
//! its own rule ([`LockRecord::is_stale`]); a lock that exists but cannot be read or parsed counts
//! as live. Uploads an interrupted backup journaled for resuming (ADR 4,
//! `<prefix>.z3-journal/<dataset>@<snapshot>` naming the upload) are kept until they are
//! [`RESUME_WINDOW`](crate::journal::RESUME_WINDOW) old, then aborted with their journal. The
//! clock is the caller's (`now`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use z3_core::{FullSnapshotName, KeyLayout, LockRecord};
use z3_s3::{ObjectStore, retry};

use crate::error::Error;
use crate::report::{Event, Events};
pub use crate::report::{UploadAction, UploadSeen};

/// What a cleanup found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Open uploads listed.
    pub open: usize,
    /// Old enough to abort (and not covered by a live lock).
    pub stale: usize,
    /// Old enough, but kept: a live backup lock covers the key.
    pub locked: usize,
    /// Old enough, but kept: journaled for resuming, and within the resume window.
    pub journaled: usize,
    /// Aborted (0 on a dry run).
    pub aborted: usize,
    /// Aborts that failed.
    pub failed: usize,
}

impl CleanupReport {
    /// The closing line: `aborted 2 of 5 unfinished uploads in BUCKET started at least 7
    /// day(s) ago`, and the uploads kept for a live lock.
    #[must_use]
    pub fn summary(&self, dry_run: bool, bucket: &str, max_age_days: f64) -> String {
        let (verb, count) = if dry_run {
            ("would abort", self.stale)
        } else {
            ("aborted", self.aborted)
        };
        let mut kept = String::new();
        if self.locked > 0 {
            kept = format!(
                "; kept {} old upload(s) covered by a live backup lock",
                self.locked
            );
        }
        if self.journaled > 0 {
            let _ = write!(
                kept,
                "; kept {} upload(s) journaled for the next backup to resume",
                self.journaled
            );
        }
        format!(
            "{verb} {count} of {} unfinished uploads in {bucket} started at least {max_age_days} \
             day(s) ago{kept}",
            self.open
        )
    }
}

/// Lists the open uploads under `prefix` and aborts those started at least `max_age` before
/// `now` (the caller's clock) unless `dry_run`; one [`Event::Upload`] per upload, in listing
/// order, and an [`Event::AbortFailed`] after one whose abort failed.
///
/// # Errors
/// Listing failures ([`Error::Failed`]) and events the caller could not take; failed aborts
/// are counted in the report.
pub async fn cleanup(
    store: &dyn ObjectStore,
    prefix: &str,
    max_age: Duration,
    dry_run: bool,
    now: SystemTime,
    retry_config: &z3_s3::RetryConfig,
    events: &mut dyn Events,
) -> std::result::Result<CleanupReport, Error> {
    cleanup_inner(store, prefix, max_age, dry_run, now, retry_config, events)
        .await
        .map_err(|err| Error::classify(err, None))
}

async fn cleanup_inner(
    store: &dyn ObjectStore,
    prefix: &str,
    max_age: Duration,
    dry_run: bool,
    now: SystemTime,
    retry_config: &z3_s3::RetryConfig,
    events: &mut dyn Events,
) -> Result<CleanupReport> {
    let uploads = z3_s3::list_uploads_with_retry(store, prefix, retry_config)
        .await
        .with_context(|| format!("cannot list the open uploads of {}", store.bucket()))?;
    let mut report = CleanupReport {
        open: uploads.len(),
        ..CleanupReport::default()
    };
    let mut locks = Locks::new(store, now, retry_config);
    for upload in &uploads {
        let age = upload.initiated.and_then(|t| now.duration_since(t).ok());
        let old = age.is_some_and(|age| age >= max_age);
        let holder = if old {
            locks.live_lock_of(&upload.key).await
        } else {
            None
        };
        let journal = match (old, &holder) {
            (true, None) => journal_of(store, upload, retry_config).await,
            _ => None,
        };
        let in_window = age.is_some_and(|age| age < crate::journal::RESUME_WINDOW);
        let action = match (old, &holder, &journal) {
            (true, Some(why), _) => UploadAction::KeptLocked { why: why.clone() },
            (true, None, Some(journal)) if in_window => UploadAction::KeptJournaled {
                why: format!(
                    "the journal s3://{}/{journal} names it: an interrupted backup may resume it until it is {} days old",
                    store.bucket(),
                    crate::journal::RESUME_WINDOW.as_secs() / 86_400
                ),
            },
            (true, None, _) => UploadAction::Abort,
            (false, _, _) => UploadAction::Young,
        };
        let journaled = matches!(action, UploadAction::KeptJournaled { .. });
        events.event(Event::Upload(UploadSeen {
            key: upload.key.clone(),
            upload_id: upload.upload_id.as_str().to_owned(),
            initiated: upload.initiated,
            action,
        }))?;
        if holder.is_some() {
            report.locked += 1;
            continue;
        }
        if journaled {
            report.journaled += 1;
            continue;
        }
        if !old {
            continue;
        }
        report.stale += 1;
        if dry_run {
            continue;
        }
        match retry(retry_config, "abort_multipart", || {
            store.abort_multipart(&upload.key, &upload.upload_id)
        })
        .await
        {
            Ok(()) => {
                report.aborted += 1;
                if let Some(journal) = &journal {
                    crate::journal::remove(store, journal, retry_config).await;
                }
            }
            // Gone already (another cleanup, or its owner finished): what we wanted.
            Err(err) if err.kind() == z3_s3::ErrorKind::NoSuchUpload => report.aborted += 1,
            Err(err) => {
                report.failed += 1;
                events.event(Event::AbortFailed {
                    key: upload.key.clone(),
                    upload_id: upload.upload_id.as_str().to_owned(),
                    error: err.to_string(),
                })?;
            }
        }
    }
    Ok(report)
}

/// The key of the journal that names `upload`, if there is one: `<prefix>.z3-journal/<ds>@<snap>`
/// for some split of its key (the prefix is not known here, as for locks). A journal that
/// cannot be read names nothing.
async fn journal_of(
    store: &dyn ObjectStore,
    upload: &z3_s3::MultipartUploadInfo,
    retry: &z3_s3::RetryConfig,
) -> Option<String> {
    for key in journal_candidates(&upload.key) {
        if let Ok(Some(Some(journal))) = crate::journal::read(store, &key, retry).await
            && journal.upload_id == upload.upload_id.as_str()
            && journal.identity.key == upload.key
        {
            return Some(key);
        }
    }
    None
}

/// The ways `key` can be a z3 object key `<prefix><dataset>@<snapshot>`: every split at a `/`
/// whose rest is a valid snapshot name. The prefix is not known here (the bucket may hold
/// several), so each is a candidate.
fn layouts_of(key: &str) -> Vec<(KeyLayout, FullSnapshotName)> {
    key.match_indices('/')
        .filter_map(|(slash, _)| {
            let (prefix, name) = key.split_at(slash + 1);
            Some((KeyLayout::new(prefix), FullSnapshotName::parse(name).ok()?))
        })
        .collect()
}

/// The journal keys that may name an upload of `key`.
fn journal_candidates(key: &str) -> Vec<String> {
    (layouts_of(key).iter())
        .map(|(layout, name)| layout.journal_key(name))
        .collect()
}

/// The backup locks that may cover an upload's key, read once each.
struct Locks<'a> {
    store: &'a dyn ObjectStore,
    now: u64,
    retry: &'a z3_s3::RetryConfig,
    /// Lock key → why it is live (`None`: absent or stale).
    seen: HashMap<String, Option<String>>,
}

impl<'a> Locks<'a> {
    fn new(store: &'a dyn ObjectStore, now: SystemTime, retry: &'a z3_s3::RetryConfig) -> Self {
        Self {
            store,
            now: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            retry,
            seen: HashMap::new(),
        }
    }

    /// The live lock covering `key`, described for the output, if any. A z3 object key is
    /// `<prefix><dataset>@<snapshot>` with a prefix ending in `/`; the prefix is not known here
    /// (the bucket may hold several), so every split at a `/` whose rest is a valid dataset
    /// name is a candidate: `<prefix>.z3-locks/<dataset>`.
    async fn live_lock_of(&mut self, key: &str) -> Option<String> {
        for lock_key in lock_candidates(key) {
            if !self.seen.contains_key(&lock_key) {
                let state = self.read(&lock_key).await;
                self.seen.insert(lock_key.clone(), state);
            }
            if let Some(Some(why)) = self.seen.get(&lock_key) {
                return Some(why.clone());
            }
        }
        None
    }

    /// Why the lock at `lock_key` is live, or `None` if there is none or it is stale.
    async fn read(&self, lock_key: &str) -> Option<String> {
        let url = format!("s3://{}/{lock_key}", self.store.bucket());
        match z3_s3::read_small(self.store, lock_key, MAX_LOCK_BYTES, self.retry).await {
            Ok(None) => None,
            Ok(Some(body)) => match LockRecord::parse(&String::from_utf8_lossy(&body)) {
                Ok(record) if record.is_stale(self.now) => None,
                Ok(record) => Some(format!("the live backup lock {url} covers it: {record}")),
                Err(err) => Some(format!(
                    "the backup lock {url} covers it and cannot be parsed ({err}), so it counts as live"
                )),
            },
            Err(err) => Some(format!(
                "the backup lock {url} may cover it and cannot be read ({err}), so it counts as live"
            )),
        }
    }
}

/// A lock record is a few hundred bytes (as in `lock`).
const MAX_LOCK_BYTES: u64 = 64 << 10;

/// The lock keys that cover `key` if it is a z3 object key `<prefix><dataset>@<snapshot>`.
fn lock_candidates(key: &str) -> Vec<String> {
    (layouts_of(key).iter())
        .map(|(layout, name)| layout.lock_key(name.dataset()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_candidates_split_at_every_slash() {
        assert_eq!(
            lock_candidates("z3-backup/pool/fs@snap"),
            ["z3-backup/.z3-locks/pool/fs", "z3-backup/pool/.z3-locks/fs"]
        );
        assert_eq!(lock_candidates("/pool@s"), ["/.z3-locks/pool"]);
        assert!(lock_candidates("pool/fs@s").contains(&"pool/.z3-locks/fs".to_owned()));
        assert!(lock_candidates("no-at-sign/key").is_empty());
        // A name ZFS refuses is no dataset, so no lock can cover it.
        assert!(lock_candidates("z3/po\"ol@s").is_empty());
    }

    #[test]
    fn journal_candidates_split_at_every_slash() {
        assert_eq!(
            journal_candidates("z3-backup/pool/fs@snap"),
            [
                "z3-backup/.z3-journal/pool/fs@snap",
                "z3-backup/pool/.z3-journal/fs@snap"
            ]
        );
        assert!(journal_candidates("no-at-sign/key").is_empty());
    }
}

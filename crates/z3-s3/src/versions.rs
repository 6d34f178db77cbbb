//! Helpers for versioned buckets and Object Lock, on top of [`ObjectStore`]'s version calls:
//! retrying listings, "at least until" retention, and the objects a delete marker hides.

use crate::error::Result;
use crate::retry::{RetryConfig, retry};
use crate::store::{ObjectStore, Retention, VersionEntry};

/// What [`extend_retention`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionChange {
    /// The version had no retention, or a weaker one; it now has this one.
    Set(Retention),
    /// The version's retention already covered the one asked for; it was left as it is.
    Unchanged(Retention),
}

/// Makes the retention of `key` version `version_id` at least `wanted`: as late, and as strong
/// (compliance over governance). Reads the version first ([`ObjectStore::head_version`]) and
/// writes only when that changes something, so calling it again is free and never asks S3 to
/// shorten anything: a longer retention, or a stronger mode, already in place is kept (the
/// result combines the later date and the stronger mode). Both calls retry as
/// [`retry()`](crate::retry()) does.
///
/// # Errors
/// As [`ObjectStore::head_version`] and [`ObjectStore::put_retention`].
pub async fn extend_retention(
    store: &dyn ObjectStore,
    key: &str,
    version_id: &str,
    wanted: Retention,
    config: &RetryConfig,
) -> Result<RetentionChange> {
    let info = retry(config, "head_version", || {
        store.head_version(key, version_id)
    })
    .await?;
    let current = info
        .retention_mode
        .zip(info.retain_until)
        .map(|(mode, retain_until)| Retention { mode, retain_until });
    let target = match current {
        Some(current) => Retention {
            mode: current.mode.max(wanted.mode),
            retain_until: current.retain_until.max(wanted.retain_until),
        },
        None => wanted,
    };
    if current == Some(target) {
        return Ok(RetentionChange::Unchanged(target));
    }
    retry(config, "put_retention", || {
        store.put_retention(key, version_id, target)
    })
    .await?;
    Ok(RetentionChange::Set(target))
}

/// [`ObjectStore::list_versions`], retried as [`retry()`](crate::retry()) does.
///
/// # Errors
/// The last store error.
pub async fn list_versions_with_retry(
    store: &dyn ObjectStore,
    prefix: &str,
    config: &RetryConfig,
) -> Result<Vec<VersionEntry>> {
    retry(config, "list_versions", || store.list_versions(prefix)).await
}

/// The objects a delete marker hides: for every key whose latest entry in `versions` (in
/// [`ObjectStore::list_versions`]'s order) is a delete marker, its newest data version, if it
/// has one. [`ObjectStore::list`] does not show these keys, but each of these versions is still
/// stored and readable by its id ([`Downloader::reader_version`](crate::Downloader::reader_version)).
#[must_use]
pub fn hidden_versions(versions: &[VersionEntry]) -> Vec<&VersionEntry> {
    let mut hidden = Vec::new();
    let mut key: Option<&str> = None;
    let mut hidden_key = false;
    for entry in versions {
        if key != Some(entry.key.as_str()) {
            key = Some(entry.key.as_str());
            hidden_key = entry.is_latest && entry.is_delete_marker;
            if hidden_key {
                continue;
            }
        }
        if hidden_key && !entry.is_delete_marker {
            hidden.push(entry);
            hidden_key = false;
        }
    }
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, id: &str, latest: bool, marker: bool) -> VersionEntry {
        VersionEntry {
            key: key.to_owned(),
            version_id: id.to_owned(),
            is_latest: latest,
            is_delete_marker: marker,
            size: u64::from(!marker),
            last_modified: None,
            etag: None,
        }
    }

    #[test]
    fn hidden_versions_are_the_newest_data_behind_a_latest_marker() {
        let versions = [
            entry("a", "a3", true, true),
            entry("a", "a2", false, true),
            entry("a", "a1", false, false),
            entry("a", "a0", false, false),
            entry("b", "b2", true, false),
            entry("b", "b1", false, true),
            entry("b", "b0", false, false),
            entry("c", "c1", true, true),
            entry("d", "d1", true, true),
            entry("d", "d0", false, false),
        ];
        let hidden: Vec<&str> = hidden_versions(&versions)
            .into_iter()
            .map(|v| v.version_id.as_str())
            .collect();
        assert_eq!(hidden, ["a1", "d0"]);
    }
}

//! `z3 status --all`: every dataset backed up under one key prefix, one summary each
//! ([`z3_core::fleet`]), from one listing and one HEAD per object (per new or changed object,
//! with the status cache of [`crate::meta_cache`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use serde::Serialize;
use z3_core::fleet::{DatasetSummary, FleetObject, summarize};
use z3_core::{KeyLayout, ObjectMeta, RemoteSnapshot};
use z3_s3::{ListEntry, ObjectInfo, ObjectStore, RetryConfig};

use crate::error::Error;
use crate::meta_cache::{CacheScope, CachedObject, CachedObjects, MetaCache};

/// HEAD requests in flight while reading objects' metadata.
const HEAD_CONCURRENCY: usize = 16;

/// What [`status_all`] found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FleetReport {
    /// The bucket.
    pub bucket: String,
    /// The normalised key prefix.
    pub s3_prefix: String,
    /// One summary per dataset, sorted by name.
    pub datasets: Vec<DatasetSummary>,
    /// Every dataset's chains are intact.
    pub healthy: bool,
}

/// The bucket as z3 reads it: with `OBJECT_LOCK` (`object_lock`), through
/// [`z3_s3::Unhidden`], so backups hidden behind a delete marker still count.
#[must_use]
pub fn read_view(store: Arc<dyn ObjectStore>, object_lock: bool) -> Arc<dyn ObjectStore> {
    if object_lock {
        Arc::new(z3_s3::Unhidden::new(store))
    } else {
        store
    }
}

/// Lists every backup object under `layout`'s prefix (not seals, not locks), reads their
/// metadata and summarises them per dataset, with ages measured from `now`.
///
/// With a `cache` ([`crate::meta_cache`]), only objects that are new or changed since its last
/// run are read (one HEAD each); the others cost nothing beyond the listing.
///
/// # Errors
/// Listing or HEAD failures after retries ([`Error::Failed`]).
pub async fn status_all(
    store: &Arc<dyn ObjectStore>,
    layout: &KeyLayout,
    retry: &RetryConfig,
    now: SystemTime,
    cache: Option<&dyn MetaCache>,
) -> std::result::Result<FleetReport, Error> {
    status_all_inner(store, layout, retry, now, cache)
        .await
        .map_err(|err| Error::classify(err, None))
}

async fn status_all_inner(
    store: &Arc<dyn ObjectStore>,
    layout: &KeyLayout,
    retry: &RetryConfig,
    now: SystemTime,
    cache: Option<&dyn MetaCache>,
) -> Result<FleetReport> {
    let prefix = layout.prefix();
    let entries = z3_s3::list_with_retry(store.as_ref(), prefix, retry)
        .await
        .with_context(|| format!("cannot list s3://{}/{prefix}", store.bucket()))?
        .into_iter()
        .filter(|entry| {
            // Seals and locks live in dot-directories below the prefix; a backup's name has a
            // dataset (beginning with a letter) and an `@`.
            layout
                .name_of(&entry.key)
                .is_some_and(|name| !name.starts_with('.') && name.contains('@'))
        })
        .collect();
    let scope = CacheScope::new(store.bucket(), prefix);
    let objects = read_objects(store, layout, entries, retry, cache.map(|c| (c, &scope)))
        .await?
        .into_iter()
        .map(|(object, info)| FleetObject {
            object,
            last_modified: info.last_modified,
        })
        .collect();
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let datasets = summarize(objects, now);
    Ok(FleetReport {
        bucket: store.bucket().to_owned(),
        s3_prefix: prefix.to_owned(),
        healthy: datasets.iter().all(|d| d.healthy),
        datasets,
    })
}

/// `roots` (dataset names) with every dataset below each, sorted, without duplicates (`--all
/// --recursive`). A root that is no valid name or cannot be listed stays as given, so that its
/// own run reports why.
pub async fn with_descendants(zfs: &dyn z3_zfs::Zfs, roots: &[String]) -> Vec<String> {
    let mut all = Vec::new();
    for root in roots {
        if let Ok(name) = z3_core::DatasetName::new(root) {
            let below = zfs.list_datasets(&name).await.unwrap_or_default();
            all.extend(below.iter().map(ToString::to_string));
        }
        all.push(root.clone());
    }
    all.sort();
    all.dedup();
    all
}

/// The listed objects with their metadata and what their HEAD said, one HEAD each (a bounded
/// number at once); an object deleted between the listing and its HEAD (e.g. by a lifecycle
/// rule) is left out.
///
/// With a `cache` (only `status` passes one), an object whose listing matches its entry
/// ([`CachedObject::matches`]) is not read again, and after all were read the scope's entries
/// are replaced by this listing's objects (unless they are the same already). A failed read
/// saves nothing.
pub(crate) async fn read_objects(
    store: &Arc<dyn ObjectStore>,
    layout: &KeyLayout,
    entries: Vec<ListEntry>,
    retry: &RetryConfig,
    cache: Option<(&dyn MetaCache, &CacheScope)>,
) -> Result<Vec<(RemoteSnapshot, ObjectInfo)>> {
    let cached = cache
        .map(|(cache, scope)| cache.load(scope))
        .unwrap_or_default();
    let heads = futures::stream::iter(entries)
        .map(|entry| {
            let store = Arc::clone(store);
            let hit = (cached.get(&entry.key))
                .filter(|c| c.matches(&entry))
                .map(|c| c.info(&entry.key));
            async move {
                let info = match hit {
                    Some(info) => Ok(info),
                    None => z3_s3::head_with_retry(store.as_ref(), &entry.key, retry).await,
                };
                (entry, info)
            }
        })
        .buffered(HEAD_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut objects = Vec::with_capacity(heads.len());
    let mut seen = CachedObjects::new();
    for (entry, info) in heads {
        match info {
            Ok(mut info) => {
                info.last_modified = info.last_modified.or(entry.last_modified);
                if cache.is_some()
                    && let Some(keep) = CachedObject::new(&entry, &info)
                {
                    seen.insert(entry.key.clone(), keep);
                }
                objects.push((
                    RemoteSnapshot {
                        name: layout.name_of(&entry.key).unwrap_or(&entry.key).to_owned(),
                        key: entry.key,
                        object_size: info.size,
                        meta: ObjectMeta::from_map(&info.metadata),
                        etag: info.etag.clone(),
                    },
                    info,
                ));
            }
            Err(err) if err.kind() == z3_s3::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(anyhow!(err)).context(format!(
                    "cannot read metadata of s3://{}/{}",
                    store.bucket(),
                    entry.key
                ));
            }
        }
    }
    // A run that found nothing new leaves the cache as it is (no rewrite of a large file).
    if let Some((cache, scope)) = cache
        && seen != cached
    {
        cache.save(scope, &seen);
    }
    Ok(objects)
}

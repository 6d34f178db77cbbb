//! The status cache (issue 16, point 4): `status` and `status --all` HEAD only the objects that
//! are new or changed since the last run, and show the same as without the cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use z3_core::KeyLayout;
use z3_engine::fleet::{FleetReport, status_all};
use z3_engine::meta_cache::CacheScope;
use z3_engine::{
    BackupOptions, FileMetaCache, MemoryMetaCache, MetaCache, NoEvents, StatusOptions,
    VerifyOptions,
};
use z3_s3::{MemoryStore, ObjectStore, Op, PutOptions, RetryConfig};

use super::{setup, zstd};

/// A backup object with z3's metadata: a full, or an incremental on `parent`.
fn put(store: &MemoryStore, key: &str, body: &str, parent: Option<&str>) {
    let mut metadata = BTreeMap::from([("size".to_owned(), body.len().to_string())]);
    match parent {
        Some(parent) => metadata.insert("parent".to_owned(), parent.to_owned()),
        None => metadata.insert("isfull".to_owned(), "true".to_owned()),
    };
    let options = PutOptions {
        metadata,
        ..PutOptions::default()
    };
    store.insert(key, body.to_owned(), &options);
}

/// Three objects of two datasets under `z3/`, stored at a fixed time.
fn fleet() -> MemoryStore {
    let store = MemoryStore::new("b");
    store.set_time(1_800_000_000);
    put(&store, "z3/pool/a@s1", "a1", None);
    put(&store, "z3/pool/a@s2", "a2", Some("pool/a@s1"));
    put(&store, "z3/pool/b@s1", "b1", None);
    // Seals and locks are not backups: listed, never read.
    store.insert("z3/.z3-seals/pool/a@s1@t", "seal", &PutOptions::default());
    store
}

async fn all(store: &MemoryStore, cache: Option<&dyn MetaCache>) -> FleetReport {
    let store: Arc<dyn ObjectStore> = Arc::new(store.clone());
    let layout = KeyLayout::new("z3/");
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    status_all(&store, &layout, &RetryConfig::default(), now, cache)
        .await
        .unwrap()
}

/// The HEADs one `status --all` run makes, and its report (as JSON, to compare).
async fn heads_of_all(store: &MemoryStore, cache: Option<&dyn MetaCache>) -> (u64, String) {
    store.reset_calls();
    let report = all(store, cache).await;
    let heads = store.calls(Op::Head);
    assert_eq!(store.calls(Op::List), 1, "one listing");
    (heads, serde_json::to_string(&report).unwrap())
}

#[tokio::test]
async fn status_all_heads_only_new_and_replaced_objects() {
    let store = fleet();
    let cache = MemoryMetaCache::new();
    let (heads, cold) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!(heads, 3, "a cold run reads every backup");
    assert_eq!(cold, heads_of_all(&store, None).await.1, "same as without");
    let scope = CacheScope::new("b", "z3/");
    assert_eq!(cache.scope(&scope).unwrap().len(), 3, "seals are not kept");

    let saves = cache.calls().1;
    let (heads, warm) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!(heads, 0, "a warm run reads none");
    assert_eq!(warm, cold);
    assert_eq!(cache.calls().1, saves, "and rewrites nothing");

    // A new object: only it is read.
    store.set_time(1_800_000_050);
    put(&store, "z3/pool/b@s2", "b2", Some("pool/b@s1"));
    let (heads, report) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!(heads, 1);
    assert_eq!(report, heads_of_all(&store, None).await.1);

    // A replaced object (new content, new time, new metadata: now on a parent that is not
    // there) is read again, and what it says now is shown.
    store.set_time(1_800_000_060);
    put(&store, "z3/pool/a@s2", "a2 again", Some("pool/a@gone"));
    let (heads, report) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!(heads, 1);
    assert_eq!(report, heads_of_all(&store, None).await.1);
    let report = all(&store, Some(&cache)).await;
    let a = &report.datasets[0];
    assert_eq!(a.dataset, "pool/a");
    assert!(!a.healthy && a.broken == 1, "{a:?}");
    assert!(!report.healthy);

    // A deleted object drops out of the cache.
    store.delete("z3/pool/b@s2").await.unwrap();
    let (heads, _) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!(heads, 0);
    let kept = cache.scope(&scope).unwrap();
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        ["z3/pool/a@s1", "z3/pool/a@s2", "z3/pool/b@s1"]
    );
}

#[tokio::test]
async fn same_content_at_another_time_is_read_again() {
    let store = fleet();
    let cache = MemoryMetaCache::new();
    heads_of_all(&store, Some(&cache)).await;
    // Same bytes (same ETag), other metadata, one second later: the time tells.
    store.set_time(1_800_000_001);
    put(&store, "z3/pool/b@s1", "b1", Some("pool/b@s0"));
    let (heads, report) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!(heads, 1);
    assert_eq!(report, heads_of_all(&store, None).await.1);
}

#[tokio::test]
async fn a_wrong_entry_is_not_served_when_the_listing_differs() {
    let store = fleet();
    let cache = MemoryMetaCache::new();
    heads_of_all(&store, Some(&cache)).await;
    let scope = CacheScope::new("b", "z3/");
    // Poison every entry's metadata and ETag: the listing no longer matches, so they are
    // read again and the report is the true one.
    let mut objects = cache.scope(&scope).unwrap();
    for object in objects.values_mut() {
        object.etag = "\"stale\"".into();
        object.metadata.clear();
    }
    cache.set_scope(&scope, objects);
    let (heads, report) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!(heads, 3);
    assert_eq!(report, heads_of_all(&store, None).await.1);
}

#[tokio::test]
async fn a_corrupt_cache_file_still_gives_the_right_report() {
    let store = fleet();
    let dir = tempfile::tempdir().unwrap();
    let cache = FileMetaCache::new(dir.path().join("z3"), Some("http://127.0.0.1:1"));
    let (heads, cold) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!(heads, 3);
    let path = cache.path(&CacheScope::new("b", "z3/"));
    assert!(path.exists());
    assert_eq!(
        heads_of_all(&store, Some(&cache)).await.0,
        0,
        "warm from the file"
    );

    std::fs::write(&path, b"{\"version\":1,\"objects\":{\"z3/pool/a@s1\":").unwrap();
    let (heads, report) = heads_of_all(&store, Some(&cache)).await;
    assert_eq!((heads, &report), (3, &cold));
    // The corrupt file was replaced by a good one.
    assert_eq!(heads_of_all(&store, Some(&cache)).await.0, 0);

    // A cache directory that cannot be created: no cache, the same report.
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, "x").unwrap();
    let cache = FileMetaCache::new(blocked.join("z3"), None);
    for _ in 0..2 {
        let (heads, report) = heads_of_all(&store, Some(&cache)).await;
        assert_eq!((heads, &report), (3, &cold));
    }
}

#[tokio::test]
async fn status_of_one_dataset_heads_only_new_objects_and_other_commands_none_cached() {
    let (zfs, store, engine) = setup();
    engine
        .backup(&BackupOptions::new(zstd()), &mut NoEvents)
        .await
        .unwrap();
    let cache = Arc::new(MemoryMetaCache::new());
    let cached = engine.clone().with_meta_cache(cache.clone());
    let store = &store;
    let status = |engine: z3_engine::Engine| async move {
        store.reset_calls();
        let report = engine.status(&StatusOptions::default()).await.unwrap();
        (
            store.calls(Op::Head),
            serde_json::to_value(&report).unwrap(),
        )
    };
    let (heads, cold) = status(cached.clone()).await;
    assert_eq!(heads, 2, "cold: every object");
    assert_eq!(cold, status(engine.clone()).await.1);
    let (heads, warm) = status(cached.clone()).await;
    assert_eq!((heads, &warm), (0, &cold), "warm: none");
    assert_eq!(
        cache.scopes(),
        [CacheScope::new("b", "z3/tank/data@daily-")],
        "one scope: the dataset's listing"
    );

    // A new backup: only its object is read.
    zfs.write("tank/data", "wednesday").unwrap();
    zfs.snapshot("tank/data@daily-3").unwrap();
    let calls = cache.calls();
    cached
        .backup(&BackupOptions::new(zstd()), &mut NoEvents)
        .await
        .unwrap();
    let verified = cached
        .verify(&VerifyOptions::default(), &mut NoEvents)
        .await
        .unwrap();
    assert!(verified.passed());
    assert_eq!(
        cache.calls(),
        calls,
        "backup and verify never use the cache"
    );
    let (heads, report) = status(cached.clone()).await;
    assert_eq!(heads, 1);
    assert_eq!(report, status(engine.clone()).await.1);
    assert_eq!(report["rows"].as_array().unwrap().len(), 3);
}

//! Resuming an interrupted backup (issue 16 point 1, ADR 4) on `FakeZfs` and `MemoryStore`:
//! a backup whose `zfs send` dies leaves its upload open with a journal; the next run of the
//! same snapshot sends only the parts the journal does not prove, and the object restores
//! byte-exact; anything that does not match (another guid, `--no-resume`, an encoding that is
//! not deterministic) starts over and leaves no open upload behind.
//!
//! The promise: no run completes an object from parts of two streams, and a failed run never
//! leaves anything that looks like a backup (no object, no seal): only an open upload and the
//! journal naming it.

use std::sync::Arc;

use z3_codec::{AgeRecipients, Compressor, Encoding};
use z3_core::{DatasetName, FullSnapshotName, KeyLayout, SnapshotName};
use z3_engine::{
    BackupOptions, Engine, EngineConfig, Event, NoEvents, RecordedEvents, RestoreOptions,
};
use z3_s3::{FaultyStore, MemoryStore, ObjectStore, Op};
use z3_zfs::fake::FakeZfs;

const KEY: &str = "z3/tank/data@daily-1";
const JOURNAL: &str = "z3/.z3-journal/tank/data@daily-1";
const MIB: usize = 1 << 20;

/// Incompressible bytes, the same for the same seed.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn host(content: Vec<u8>) -> FakeZfs {
    let zfs = FakeZfs::new();
    zfs.create_dataset("tank/data").unwrap();
    zfs.write("tank/data", content).unwrap();
    zfs.snapshot("tank/data@daily-1").unwrap();
    zfs
}

fn engine(zfs: &FakeZfs, store: &Arc<FaultyStore<MemoryStore>>) -> Engine {
    let mut config = EngineConfig::new("b", "z3/", DatasetName::new("tank/data").unwrap());
    config.snapshot_prefix = "daily-".into();
    config.transfer.concurrency = 2;
    let store: Arc<dyn ObjectStore> = store.clone();
    Engine::new(Arc::new(zfs.clone()), store, config)
}

fn options(compressor: &str) -> BackupOptions {
    BackupOptions::new(Encoding {
        compressor: Compressor::parse(compressor, "").unwrap(),
        encryption: None,
    })
}

fn new_store() -> Arc<FaultyStore<MemoryStore>> {
    Arc::new(FaultyStore::new(MemoryStore::new("b")))
}

/// A first run whose `zfs send` dies after `after` bytes.
async fn interrupted(
    zfs: &FakeZfs,
    store: &Arc<FaultyStore<MemoryStore>>,
    opts: &BackupOptions,
    after: usize,
) -> String {
    zfs.fail_next_send(after);
    failed(zfs, store, opts).await
}

/// A first run that S3 fails at part 5 (refused for good): parts 1-4 stay stored.
async fn refused_at_part_5(
    zfs: &FakeZfs,
    store: &Arc<FaultyStore<MemoryStore>>,
    opts: &BackupOptions,
) -> String {
    let part5 = z3_s3::PartNumber::new(5).unwrap();
    store.fail_part_with(part5, 1, z3_s3::ErrorKind::AccessDenied);
    failed(zfs, store, opts).await
}

/// A first run that fails: no object and no seal.
async fn failed(
    zfs: &FakeZfs,
    store: &Arc<FaultyStore<MemoryStore>>,
    opts: &BackupOptions,
) -> String {
    let err = engine(zfs, store)
        .backup(opts, &mut NoEvents)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(store.inner().object(KEY).is_none(), "no object: {text}");
    let objects = store.inner().objects();
    let seals: Vec<_> = objects
        .keys()
        .filter(|k| k.starts_with("z3/.z3-seals/"))
        .collect();
    assert!(seals.is_empty(), "no seal: {seals:?}");
    text
}

/// The number of parts of the object at `key`, from its `"…-N"` ETag.
fn object_parts(store: &FaultyStore<MemoryStore>) -> u64 {
    let etag = store.inner().object_details(KEY).expect("an object").etag;
    let n = etag
        .trim_matches('"')
        .rsplit_once('-')
        .expect("a multipart ETag")
        .1;
    n.parse().unwrap()
}

fn journaled_parts(store: &FaultyStore<MemoryStore>) -> usize {
    let (body, _, _) = store.inner().object(JOURNAL).expect("a journal");
    let journal = z3_engine::journal::Journal::parse(&body).expect("parses");
    journal.parts.len()
}

async fn restored(store: &Arc<FaultyStore<MemoryStore>>) -> Vec<u8> {
    let zfs = FakeZfs::new();
    zfs.create_dataset("tank").unwrap();
    let mut config = EngineConfig::new("b", "z3/", DatasetName::new("tank/data").unwrap());
    config.snapshot_prefix = "daily-".into();
    let store: Arc<dyn ObjectStore> = store.clone();
    Engine::new(Arc::new(zfs.clone()), store, config)
        .restore(
            &RestoreOptions::new(SnapshotName::new("daily-1").unwrap()),
            &mut NoEvents,
        )
        .await
        .unwrap();
    zfs.snapshot_content("tank/data@daily-1").unwrap().to_vec()
}

#[tokio::test]
async fn an_interrupted_backup_resumes_where_it_stopped_and_restores_byte_exact() {
    for compressor in ["none", "zstd"] {
        let content = data(40 * MIB, 7);
        let zfs = host(content.clone());
        let store = new_store();
        let opts = options(compressor);
        // Without compression `zfs send` dies; with zstd, S3 refuses part 5 (zstd's workers
        // read far ahead, so a dying input fails the stream before their output is read).
        let err = if compressor == "none" {
            interrupted(&zfs, &store, &opts, 32 * MIB).await
        } else {
            refused_at_part_5(&zfs, &store, &opts).await
        };
        assert!(err.contains("left open"), "{err}");
        assert_eq!(store.inner().open_uploads(), 1, "{compressor}: left open");
        let journaled = journaled_parts(&store);
        assert!(journaled >= 2, "{compressor}: {journaled} parts journaled");
        let puts_before = store.calls(Op::PutPart);

        let mut events = RecordedEvents::default();
        let report = engine(&zfs, &store)
            .backup(&opts, &mut events)
            .await
            .unwrap();
        let done = &report.snapshots[0];
        let parts = object_parts(&store);
        assert_eq!(
            done.resumed_parts,
            Some(u16::try_from(journaled).unwrap()),
            "{compressor}"
        );
        assert_eq!(
            store.calls(Op::PutPart) - puts_before,
            parts - journaled as u64,
            "{compressor}: the rerun sends only the parts the journal does not prove"
        );
        assert_eq!(
            store.calls(Op::CreateMultipart),
            1,
            "{compressor}: one upload"
        );
        assert!(
            events
                .0
                .iter()
                .any(|e| matches!(e, Event::Note { text } if text.contains("resumed the upload"))),
            "{compressor}: the run says it resumed"
        );
        assert!(
            store.inner().object(JOURNAL).is_none(),
            "{compressor}: journal removed"
        );
        assert_eq!(store.inner().open_uploads(), 0);
        assert!(
            restored(&store).await == content,
            "{compressor}: restores byte-exact"
        );
    }
}

#[tokio::test]
async fn a_snapshot_re_created_under_the_same_name_starts_over() {
    let zfs = host(data(20 * MIB, 1));
    let store = new_store();
    let opts = options("none");
    interrupted(&zfs, &store, &opts, 12 * MIB).await;
    assert_eq!(store.inner().open_uploads(), 1);
    assert!(journaled_parts(&store) >= 1);
    // The snapshot is destroyed and taken again: another guid, other data.
    zfs.destroy_snapshot("tank/data@daily-1").unwrap();
    let content = data(20 * MIB, 2);
    zfs.write("tank/data", content.clone()).unwrap();
    zfs.snapshot("tank/data@daily-1").unwrap();
    let report = engine(&zfs, &store)
        .backup(&opts, &mut NoEvents)
        .await
        .unwrap();
    assert_eq!(report.snapshots[0].resumed_parts, None);
    assert_eq!(
        store.inner().open_uploads(),
        0,
        "the old upload was aborted"
    );
    assert_eq!(store.calls(Op::CreateMultipart), 2);
    assert!(store.inner().object(JOURNAL).is_none());
    assert!(restored(&store).await == content);
}

#[tokio::test]
async fn no_resume_aborts_the_journaled_upload_and_starts_over() {
    let content = data(20 * MIB, 3);
    let zfs = host(content.clone());
    let store = new_store();
    refused_at_part_5(&zfs, &store, &options("zstd")).await;
    assert!(journaled_parts(&store) >= 4);
    let puts_before = store.calls(Op::PutPart);
    let opts = BackupOptions {
        no_resume: true,
        ..options("zstd")
    };
    let report = engine(&zfs, &store)
        .backup(&opts, &mut NoEvents)
        .await
        .unwrap();
    assert_eq!(report.snapshots[0].resumed_parts, None);
    let parts = object_parts(&store);
    assert_eq!(
        store.calls(Op::PutPart) - puts_before,
        parts,
        "every part again"
    );
    assert_eq!(store.inner().open_uploads(), 0);
    assert!(restored(&store).await == content);
}

#[tokio::test]
async fn a_changed_compressor_or_an_encrypted_backup_does_not_resume() {
    let content = data(20 * MIB, 4);
    let zfs = host(content.clone());
    let store = new_store();
    refused_at_part_5(&zfs, &store, &options("zstd")).await;
    assert!(journaled_parts(&store) >= 4);
    // Another level: another stream, so the journal does not match and is discarded.
    engine(&zfs, &store)
        .backup(&options("zstd9"), &mut NoEvents)
        .await
        .unwrap();
    assert_eq!(store.inner().open_uploads(), 0);
    assert!(store.inner().object(JOURNAL).is_none());
    assert!(restored(&store).await == content);

    // age draws a fresh file key per object: a failed encrypted backup aborts as before.
    let zfs = host(content);
    let store = new_store();
    let identity = age::x25519::Identity::generate();
    let opts = BackupOptions::new(Encoding {
        compressor: Compressor::parse("zstd", "").unwrap(),
        encryption: Some(AgeRecipients::parse(&[identity.to_public().to_string()]).unwrap()),
    });
    let err = refused_at_part_5(&zfs, &store, &opts).await;
    assert!(err.contains("upload aborted"), "{err}");
    assert_eq!(store.inner().open_uploads(), 0);
    assert!(store.inner().object(JOURNAL).is_none());
}

#[test]
fn the_journal_lives_outside_every_snapshot_listing() {
    let layout = KeyLayout::new("z3/");
    let name = FullSnapshotName::parse("tank/data@daily-1").unwrap();
    assert_eq!(layout.journal_key(&name), JOURNAL);
    assert_eq!(layout.key(&name), KEY);
}

//! The engine as an embedder sees it: typed reports, the events in order, and the error kinds,
//! on `FakeZfs` and `MemoryStore`.

use std::sync::Arc;

use z3_codec::{AgeRecipients, Compressor, Encoding};
use z3_core::{DatasetName, SnapshotName};
use z3_engine::{
    BackupOptions, Engine, EngineConfig, Error, Event, Kind, NoEvents, RecordedEvents,
    RecordingProgress, RestoreOptions, StatusOptions, Verdict, VerifyOptions,
};
use z3_s3::MemoryStore;
use z3_zfs::fake::FakeZfs;

#[path = "api/status_cache.rs"]
mod status_cache;

fn setup() -> (FakeZfs, MemoryStore, Engine) {
    let zfs = FakeZfs::new();
    zfs.create_dataset("tank/data").unwrap();
    for (day, content) in [("daily-1", "monday"), ("daily-2", "tuesday")] {
        zfs.write("tank/data", content).unwrap();
        zfs.snapshot(&format!("tank/data@{day}")).unwrap();
    }
    let store = MemoryStore::new("b");
    let mut config = EngineConfig::new("b", "z3/", DatasetName::new("tank/data").unwrap());
    config.snapshot_prefix = "daily-".into();
    let engine = Engine::new(Arc::new(zfs.clone()), Arc::new(store.clone()), config);
    (zfs, store, engine)
}

fn zstd() -> Encoding {
    Encoding {
        compressor: Compressor::parse("zstd", "").unwrap(),
        encryption: None,
    }
}

#[tokio::test]
async fn backup_reports_each_snapshot_as_it_is_stored_and_sealed() {
    let (zfs, store, engine) = setup();
    let progress = RecordingProgress::new();
    let engine = engine.with_progress(Arc::new(progress.clone()));
    let mut events = RecordedEvents::default();
    let report = engine
        .backup(&BackupOptions::new(zstd()), &mut events)
        .await
        .unwrap();

    assert_eq!(report.snapshots.len(), 2);
    let (full, incremental) = (&report.snapshots[0], &report.snapshots[1]);
    assert_eq!(full.snapshot, "tank/data@daily-1");
    assert_eq!(full.kind, Kind::Full);
    assert_eq!(incremental.kind, Kind::Incremental);
    assert_eq!(incremental.parent.as_deref(), Some("tank/data@daily-1"));
    assert_eq!(full.compressor.as_deref(), Some("zstd"));
    for s in &report.snapshots {
        // What was read is the zfs stream; what was stored is the object.
        let (object, _, _) = store.object(&s.key).unwrap();
        assert_eq!(s.bytes_stored, object.len() as u64, "{s:?}");
        assert!(s.bytes_read > 0, "{s:?}");
        let digest = s.stream_digest.as_deref().unwrap();
        assert_eq!(digest.len(), 64, "{s:?}");
        // The seal records the same digest.
        let seal = store
            .objects()
            .into_iter()
            .find(|(k, _)| k.starts_with(&format!("z3/.z3-seals/{}@", s.snapshot)))
            .map(|(_, body)| String::from_utf8(body.to_vec()).unwrap())
            .unwrap();
        assert!(seal.contains(digest), "{seal}");
    }
    // One event per snapshot, in order, carrying the report's entries.
    let backed_up: Vec<String> = events
        .0
        .iter()
        .filter_map(|e| match e {
            Event::BackedUp(b) => Some(b.snapshot.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(backed_up, ["tank/data@daily-1", "tank/data@daily-2"]);
    // Progress saw each stream whole.
    let streams = progress.records();
    assert_eq!(streams.len(), 2);
    assert!(
        streams.iter().all(|r| r.finished && !r.failed),
        "{streams:?}"
    );
    assert_eq!(streams[0].bytes, full.bytes_read);

    let status = engine.status(&StatusOptions::default()).await.unwrap();
    assert!(status.healthy);
    assert_eq!(status.rows.len(), 2);
    // The report serializes (the CLI's JSON and embedders' logs rely on it).
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["snapshots"][1]["kind"], "incremental");

    zfs.destroy_dataset("tank/data").unwrap();
    let restored = engine
        .restore(
            &RestoreOptions::new(SnapshotName::new("daily-2").unwrap()),
            &mut NoEvents,
        )
        .await
        .unwrap();
    assert_eq!(restored.snapshots.len(), 2);
    assert!(restored.snapshots.iter().all(|r| r.checked));
    assert_eq!(restored.snapshots[1].stream_bytes, incremental.bytes_read);
    assert_eq!(zfs.content("tank/data").as_deref(), Some(&b"tuesday"[..]));

    let verified = engine
        .verify(&VerifyOptions::default(), &mut NoEvents)
        .await
        .unwrap();
    assert_eq!(verified.count(Verdict::Ok), 2);
    assert!(verified.passed());
}

#[tokio::test]
async fn errors_say_what_kind_of_failure_it_was() {
    let (zfs, store, engine) = setup();
    let plain = Encoding {
        compressor: Compressor::parse("none", "").unwrap(),
        encryption: None,
    };
    engine
        .backup(&BackupOptions::new(plain), &mut NoEvents)
        .await
        .unwrap();

    // A flipped bit in a stored stream: its digest no longer matches the seal, and restore
    // refuses it as an integrity failure before `zfs receive` sees its end.
    let key = "z3/tank/data@daily-1";
    let (body, meta, _) = store.object(key).unwrap();
    let mut bytes = body.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let options = z3_s3::PutOptions {
        metadata: meta,
        ..z3_s3::PutOptions::default()
    };
    z3_s3::ObjectStore::put(&store, key, bytes.into(), &options)
        .await
        .unwrap();
    zfs.destroy_dataset("tank/data").unwrap();
    let err = engine
        .restore(
            &RestoreOptions::new(SnapshotName::new("daily-1").unwrap()),
            &mut NoEvents,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity(_)), "{err:?}");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(!zfs.exists("tank/data"), "a corrupt stream was received");

    // An encrypted backup without identities: the caller must give a key.
    let (zfs, _, engine) = setup();
    let identity = age::x25519::Identity::generate();
    let encrypted = Encoding {
        compressor: Compressor::parse("zstd", "").unwrap(),
        encryption: Some(AgeRecipients::parse(&[identity.to_public().to_string()]).unwrap()),
    };
    engine
        .backup(&BackupOptions::new(encrypted), &mut NoEvents)
        .await
        .unwrap();
    zfs.destroy_dataset("tank/data").unwrap();
    let err = engine
        .restore(
            &RestoreOptions::new(SnapshotName::new("daily-2").unwrap()),
            &mut NoEvents,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(err.to_string().contains("age-encrypted"), "{err}");

    // Nothing matches the prefix: a plain failure, not an integrity problem.
    let (_, _, engine) = setup();
    let err = engine
        .backup(
            &BackupOptions {
                snapshot: Some(SnapshotName::new("weekly-1").unwrap()),
                ..BackupOptions::new(zstd())
            },
            &mut NoEvents,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Failed(_)), "{err:?}");
}

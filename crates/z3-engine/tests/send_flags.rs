//! The optional `zfs send` flags (`-w -c -L -e`, issue 16 point 3) as the engine decides them
//! on `FakeZfs`: a full adopts the configured flags the local zfs has, an incremental keeps
//! its chain's (whatever is configured now), and restore refuses a chain the local zfs cannot
//! receive before it downloads anything.

use std::sync::Arc;

use z3_codec::{Compressor, Encoding};
use z3_core::{DatasetName, SnapshotName};
use z3_engine::{
    BackupOptions, Engine, EngineConfig, Error, Event, NoEvents, RecordedEvents, RestoreOptions,
    SendFlagChoice,
};
use z3_s3::MemoryStore;
use z3_zfs::SendFlags;
use z3_zfs::fake::FakeZfs;

const FULL_KEY: &str = "z3/tank/data@daily-1";

fn flags(letters: &str) -> SendFlags {
    SendFlags::from_metadata(letters).unwrap()
}

/// A host whose zfs has `have`, with `tank/data@daily-1` and `@daily-2`.
fn host(store: &MemoryStore, have: &str) -> (FakeZfs, Engine) {
    let zfs = FakeZfs::new();
    zfs.set_send_flags(flags(have));
    zfs.create_dataset("tank/data").unwrap();
    for (day, content) in [("daily-1", "monday"), ("daily-2", "tuesday")] {
        zfs.write("tank/data", content).unwrap();
        zfs.snapshot(&format!("tank/data@{day}")).unwrap();
    }
    (zfs.clone(), engine_on(&zfs, store))
}

/// A restore host with an empty pool `tank` whose zfs has `have`.
fn restore_host(have: &str) -> FakeZfs {
    let zfs = FakeZfs::new();
    zfs.set_send_flags(flags(have));
    zfs.create_dataset("tank").unwrap();
    zfs
}

fn engine_on(zfs: &FakeZfs, store: &MemoryStore) -> Engine {
    let mut config = EngineConfig::new("b", "z3/", DatasetName::new("tank/data").unwrap());
    config.snapshot_prefix = "daily-".into();
    Engine::new(Arc::new(zfs.clone()), Arc::new(store.clone()), config)
}

fn options(choice: SendFlagChoice) -> BackupOptions {
    BackupOptions {
        send_flags: choice,
        ..BackupOptions::new(Encoding {
            compressor: Compressor::parse("zstd", "").unwrap(),
            encryption: None,
        })
    }
}

fn recorded_flags(store: &MemoryStore, key: &str) -> Option<String> {
    let (_, meta, _) = store.object(key).unwrap();
    meta.get("send-flags").cloned()
}

fn sends(zfs: &FakeZfs) -> Vec<String> {
    zfs.calls()
        .into_iter()
        .filter(|c| c.starts_with("send ") && !c.starts_with("send -n"))
        .collect()
}

fn restore_of(snapshot: &str) -> RestoreOptions {
    RestoreOptions::new(SnapshotName::new(snapshot).unwrap())
}

#[tokio::test]
async fn a_full_adopts_the_flags_the_zfs_has_and_its_incrementals_keep_them() {
    let store = MemoryStore::new("b");
    // An OpenZFS 0.7: -c -L -e, no -w.
    let (zfs, engine) = host(&store, "cLe");
    let report = engine
        .backup(&options(SendFlagChoice::Auto), &mut NoEvents)
        .await
        .unwrap();
    assert_eq!(
        sends(&zfs),
        [
            "send -c -L -e tank/data@daily-1",
            "send -c -L -e -i tank/data@daily-1 tank/data@daily-2"
        ]
    );
    assert!(report.snapshots.iter().all(|s| s.send_flags == "cLe"));
    assert_eq!(recorded_flags(&store, FULL_KEY).as_deref(), Some("cLe"));
    assert_eq!(
        recorded_flags(&store, "z3/tank/data@daily-2").as_deref(),
        Some("cLe")
    );

    // The operator goes back to plain sends: the chain's next incremental still uses the
    // chain's flags (a change of -L along a chain breaks zfs receive) …
    zfs.write("tank/data", "wednesday").unwrap();
    zfs.snapshot("tank/data@daily-3").unwrap();
    engine
        .backup(&options(SendFlagChoice::Plain), &mut NoEvents)
        .await
        .unwrap();
    assert_eq!(
        sends(&zfs).last().unwrap(),
        "send -c -L -e -i tank/data@daily-2 tank/data@daily-3"
    );
    assert_eq!(
        recorded_flags(&store, "z3/tank/data@daily-3").as_deref(),
        Some("cLe")
    );
    // … and a new full adopts the new choice, recording no flags.
    zfs.write("tank/data", "thursday").unwrap();
    zfs.snapshot("tank/data@daily-4").unwrap();
    engine
        .backup(
            &BackupOptions {
                full: true,
                ..options(SendFlagChoice::Plain)
            },
            &mut NoEvents,
        )
        .await
        .unwrap();
    assert_eq!(sends(&zfs).last().unwrap(), "send tank/data@daily-4");
    assert_eq!(recorded_flags(&store, "z3/tank/data@daily-4"), None);

    // A restore host whose zfs cannot receive -c -L -e streams (zfs-fuse) refuses the flagged
    // chain before it downloads or receives anything, naming the object and the flags …
    let old = restore_host("");
    let old_engine = engine_on(&old, &store);
    let err = old_engine
        .restore(&restore_of("daily-3"), &mut NoEvents)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("tank/data@daily-1") && text.contains("-c -L -e"),
        "{text}"
    );
    assert!(
        !old.calls().iter().any(|c| c.starts_with("receive")),
        "{:?}",
        old.calls()
    );
    assert!(!old.exists("tank/data"));
    // … but restores the plain full.
    old_engine
        .restore(&restore_of("daily-4"), &mut NoEvents)
        .await
        .unwrap();
    assert_eq!(
        old.snapshot_content("tank/data@daily-4"),
        zfs.snapshot_content("tank/data@daily-4")
    );

    // A host that can receive them restores the flagged chain byte for byte.
    let new = restore_host("cLe");
    engine_on(&new, &store)
        .restore(&restore_of("daily-3"), &mut NoEvents)
        .await
        .unwrap();
    assert_eq!(
        new.snapshot_content("tank/data@daily-3"),
        zfs.snapshot_content("tank/data@daily-3")
    );
}

#[tokio::test]
async fn flags_this_zfs_lacks_are_refused_before_anything_is_sent() {
    let store = MemoryStore::new("b");
    let (zfs, engine) = host(&store, "cLe");
    // --raw on a zfs without -w: never silently a plain (decrypting) send.
    let err = engine
        .backup(&options(SendFlagChoice::Plain.with_raw()), &mut NoEvents)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(err.to_string().contains("zfs send -w"), "{err}");
    assert!(sends(&zfs).is_empty(), "{:?}", zfs.calls());
    assert!(store.objects().keys().all(|k| k.starts_with("z3/.z3-")));
    assert!(store.object(FULL_KEY).is_none());
}

#[tokio::test]
async fn an_incremental_on_a_chain_this_zfs_cannot_send_asks_for_a_full() {
    let store = MemoryStore::new("b");
    let (zfs, engine) = host(&store, "cLe");
    engine
        .backup(&options(SendFlagChoice::Auto), &mut NoEvents)
        .await
        .unwrap();
    let before = store.objects();
    // The host is downgraded to a zfs without -L.
    zfs.set_send_flags(flags("ce"));
    zfs.write("tank/data", "wednesday").unwrap();
    zfs.snapshot("tank/data@daily-3").unwrap();
    let err = engine
        .backup(&options(SendFlagChoice::Auto), &mut NoEvents)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("-L") && text.contains("--full"), "{text}");
    let after = store.objects();
    assert_eq!(
        before.keys().filter(|k| !k.contains(".z3-lock")).count(),
        after.keys().filter(|k| !k.contains(".z3-lock")).count()
    );
    assert!(store.object("z3/tank/data@daily-3").is_none());
    // A new full adopts what this zfs has.
    engine
        .backup(
            &BackupOptions {
                full: true,
                ..options(SendFlagChoice::Auto)
            },
            &mut NoEvents,
        )
        .await
        .unwrap();
    assert_eq!(
        recorded_flags(&store, "z3/tank/data@daily-3").as_deref(),
        Some("ce")
    );
}

#[tokio::test]
async fn a_raw_chain_restores_encrypted_and_says_how_to_load_its_key() {
    let store = MemoryStore::new("b");
    let (zfs, engine) = host(&store, "wcLe");
    let report = engine
        .backup(&options(SendFlagChoice::Auto.with_raw()), &mut NoEvents)
        .await
        .unwrap();
    assert!(report.snapshots.iter().all(|s| s.send_flags == "w"));
    assert_eq!(sends(&zfs)[0], "send -w tank/data@daily-1");

    let restorer = restore_host("w");
    let mut events = RecordedEvents::default();
    engine_on(&restorer, &store)
        .restore(&restore_of("daily-2"), &mut events)
        .await
        .unwrap();
    let notes: Vec<&String> = events
        .0
        .iter()
        .filter_map(|e| match e {
            Event::Note { text } => Some(text),
            _ => None,
        })
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("zfs load-key tank/data")),
        "{notes:?}"
    );
    assert_eq!(
        restorer.snapshot_content("tank/data@daily-2"),
        zfs.snapshot_content("tank/data@daily-2")
    );
}

#[tokio::test]
async fn flags_written_by_a_newer_z3_are_neither_built_on_nor_restored() {
    let store = MemoryStore::new("b");
    let (zfs, engine) = host(&store, "cLe");
    engine
        .backup(
            &BackupOptions {
                snapshot: Some(SnapshotName::new("daily-1").unwrap()),
                ..options(SendFlagChoice::Auto)
            },
            &mut NoEvents,
        )
        .await
        .unwrap();
    // A future z3 wrote a flag this one does not know.
    let (body, mut meta, _) = store.object(FULL_KEY).unwrap();
    meta.insert("send-flags".into(), "cLeX".into());
    let put = z3_s3::PutOptions {
        metadata: meta,
        ..z3_s3::PutOptions::default()
    };
    z3_s3::ObjectStore::put(&store, FULL_KEY, body, &put)
        .await
        .unwrap();
    let err = engine
        .backup(&options(SendFlagChoice::Auto), &mut NoEvents)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(err.to_string().contains("'cLeX'"), "{err}");
    assert!(store.object("z3/tank/data@daily-2").is_none());

    zfs.destroy_dataset("tank/data").unwrap();
    let err = engine
        .restore(&restore_of("daily-1"), &mut NoEvents)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newer z3"), "{err}");
}

#[test]
fn send_flags_settings_parse() {
    assert_eq!(
        SendFlagChoice::from_setting("").unwrap(),
        SendFlagChoice::Plain
    );
    assert_eq!(
        SendFlagChoice::from_setting("None").unwrap(),
        SendFlagChoice::Plain
    );
    assert_eq!(
        SendFlagChoice::from_setting(" auto ").unwrap(),
        SendFlagChoice::Auto
    );
    assert_eq!(
        SendFlagChoice::from_setting("-c -L -e").unwrap(),
        SendFlagChoice::Exactly(flags("cLe"))
    );
    assert_eq!(
        SendFlagChoice::from_setting("w").unwrap(),
        SendFlagChoice::Exactly(flags("w"))
    );
    let err = SendFlagChoice::from_setting("cl").unwrap_err();
    assert_eq!(err.setting, "SEND_FLAGS");
    assert!(err.to_string().contains("'l'"), "{err}");
    assert_eq!(
        SendFlagChoice::Exactly(flags("c")).with_raw(),
        SendFlagChoice::Exactly(flags("wc"))
    );
}

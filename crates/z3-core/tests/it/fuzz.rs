//! Parsers and planners on arbitrary input: no panics, whatever the bucket holds.
//!
//! Bucket contents are not ours to choose: foreign objects, other tools' metadata, hand-edited
//! keys. Everything read from S3 or typed by a user goes through these functions.

use std::collections::BTreeMap;

use proptest::prelude::*;
use z3_core::{
    BackupRequest, DatasetName, FullSnapshotName, LockRecord, ObjectMeta, RemoteIndex,
    RemoteSnapshot, RestoreRequest, SnapshotName, plan_backup, plan_restore, status::status_rows,
};

use crate::fixtures::{dataset, default_local};

/// Metadata keys z3 reads (and a few it does not), with hostile values.
fn metadata() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof![
        Just("size".to_owned()),
        Just("isfull".to_owned()),
        Just("is_full".to_owned()),
        Just("parent".to_owned()),
        Just("compressor".to_owned()),
        Just("encryption".to_owned()),
        Just("guid".to_owned()),
        Just("parent-guid".to_owned()),
        Just("Parent".to_owned()),
        "[a-z-]{0,12}",
    ];
    let value = prop_oneof![
        Just("true".to_owned()),
        Just("pool/fs@snap_1".to_owned()),
        Just("pool/fs@snap_2".to_owned()),
        Just("pool/fs@".to_owned()),
        Just("@".to_owned()),
        "[0-9]{0,25}",
        "pool/fs@snap_[0-9]",
        ".{0,40}",
    ];
    proptest::collection::btree_map(key, value, 0..8)
}

fn objects() -> impl Strategy<Value = Vec<RemoteSnapshot>> {
    proptest::collection::vec(
        (
            prop_oneof!["pool/fs@snap_[0-9]", ".{0,20}", "pool/fs@.{0,6}"],
            metadata(),
            any::<u64>(),
        ),
        0..12,
    )
    .prop_map(|objs| {
        objs.into_iter()
            .map(|(name, meta, size)| RemoteSnapshot {
                key: format!("z3-backup/{name}"),
                name,
                object_size: size,
                meta: ObjectMeta::from_map(&meta),
                etag: None,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn metadata_round_trips_what_it_understood(meta in metadata()) {
        let parsed = ObjectMeta::from_map(&meta);
        prop_assert_eq!(ObjectMeta::from_map(&parsed.to_map()), parsed);
    }

    #[test]
    fn planners_and_status_never_panic_on_any_bucket(objs in objects(), target in "snap_[0-9]|.{0,8}") {
        let remote = RemoteIndex::new(objs);
        let local = default_local();
        let _ = status_rows(&local, &remote);
        let _ = plan_backup(&BackupRequest {
            dataset: &dataset(),
            snapshot_prefix: "snap_",
            local: &local,
            remote: &remote,
            target: None,
            full: false,
            overwrite_other: false,
        });
        if let Ok(target) = SnapshotName::new(&target) {
            let _ = plan_restore(&RestoreRequest {
                dataset: &dataset(),
                local: &local,
                remote: &remote,
                target: &target,
            });
        }
    }

    #[test]
    fn name_parsers_never_panic(text in ".{0,300}") {
        let _ = DatasetName::new(&text);
        let _ = SnapshotName::new(&text);
        let _ = FullSnapshotName::parse(&text);
    }

    #[test]
    fn lock_records_never_panic(text in ".{0,200}", lines in proptest::collection::vec("(owner|host|pid|acquired|expires)=.{0,30}", 0..7)) {
        let _ = LockRecord::parse(&text);
        if let Ok(record) = LockRecord::parse(&(lines.join("\n") + "\n")) {
            prop_assert_eq!(LockRecord::parse(&record.to_text()).unwrap(), record);
        }
    }
}

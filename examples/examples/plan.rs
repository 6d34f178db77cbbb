//! The pure core on its own: which snapshots a backup would send, and how healthy a bucket's chains are.
//!
//! `cargo run -p z3-examples --example plan`

use z3_core::plan::{BackupRequest, plan_backup};
use z3_core::{
    DatasetName, FullSnapshotName, LocalChain, LocalSnapshot, ObjectMeta, RemoteIndex,
    RemoteSnapshot, StepKind,
};

fn main() -> anyhow::Result<()> {
    let dataset = DatasetName::new("pool/fs")?;
    let local: Vec<LocalSnapshot> = ["daily-1", "weekly-1", "daily-2", "daily-3"]
        .iter()
        .enumerate()
        .map(|(i, snap)| {
            Ok(LocalSnapshot {
                name: FullSnapshotName::parse(&format!("pool/fs@{snap}"))?,
                guid: 1000 + i as u64,
                createtxg: 10 + i as u64,
                creation: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let chain = LocalChain::new(&local, "daily-");
    let remote = RemoteIndex::new(vec![RemoteSnapshot {
        key: "z3-backup/pool/fs@daily-1".into(),
        name: "pool/fs@daily-1".into(),
        object_size: 1234,
        meta: ObjectMeta {
            size: Some(1234),
            is_full: true,
            compressor: Some("pigz1".into()),
            ..ObjectMeta::default()
        },
        etag: None,
    }]);
    let plan = plan_backup(&BackupRequest {
        dataset: &dataset,
        snapshot_prefix: "daily-",
        local: &chain,
        remote: &remote,
        target: None,
        full: false,
        overwrite_other: false,
    })?;
    for step in &plan.steps {
        match &step.kind {
            StepKind::Full => println!("full        {}", step.snapshot),
            StepKind::Incremental { parent } => {
                println!("incremental {} (from {parent})", step.snapshot);
            }
        }
    }
    Ok(())
}

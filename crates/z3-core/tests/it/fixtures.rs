//! The upstream `_tests/test_snap.py` fixtures (docs/compatibility.md, "The original's test suite") and
//! helpers that turn plans back into the original's command lines, so expectations can be the upstream
//! suite's exact strings.

use std::collections::BTreeMap;

use z3_core::{
    BackupPlan, DatasetName, FullSnapshotName, KeyLayout, LocalChain, LocalSnapshot, ObjectMeta,
    RemoteIndex, RemoteSnapshot, RestorePlan, SnapshotName, StepKind,
};

/// Stand-in for the upstream random `test-XXXXXXXX/` key prefix.
pub(crate) const PREFIX: &str = "test-abcdefgh/";
/// The upstream manager's snapshot prefix.
pub(crate) const SNAP_PREFIX: &str = "snap_";
/// Every upstream estimate is 1234 (the fake runner always answers `size 1234`).
pub(crate) const ESTIMATE: u64 = 1234;

/// The eight upstream S3 objects: `(name, metadata)`.
pub(crate) const S3_OBJECTS: &[(&str, &[(&str, &str)])] = &[
    ("pool/fs@snap_0", &[("parent", "pool/fs@snap_expired")]),
    (
        "pool/fs@snap_1_f",
        &[("isfull", "true"), ("compressor", "pigz1")],
    ),
    ("pool/fs@snap_2", &[("parent", "pool/fs@snap_1_f")]),
    (
        "pool/fs@snap_3",
        &[("parent", "pool/fs@snap_2"), ("isfull", "false")],
    ),
    ("pool/fs@snap_4_mp", &[("parent", "missing_parent")]),
    ("pool/fs@snap_5", &[("parent", "pool/fs@snap_4_mp")]),
    (
        "pool/fs@snap_6_cycle",
        &[("parent", "pool/fs@snap_7_cycle")],
    ),
    (
        "pool/fs@snap_7_cycle",
        &[("parent", "pool/fs@snap_6_cycle")],
    ),
];

/// The upstream default fake `zfs list` output.
pub(crate) const ZFS_LIST: &str = "\
pool@snap_p1\t0\t19K\t-\t19K
pool@snap_p2\t0\t19K\t-\t0
pool/fs@snap_0\t10.0M\t10.0M\t-\t10.0M
pool/fs@snap_1_f\t10.0M\t10.0M\t-\t10.0M
pool/fs@funky_name\t10.0M\t10.0M\t-\t10.0M
pool/fs@snap_2\t10.0M\t10.0M\t-\t10.0M
pool/fs@snap_3\t10.0M\t10.0M\t-\t10.0M
pool/fs@snap_8\t10.0M\t10.0M\t-\t10.0M
pool/fs@snap_9\t10.0M\t10.0M\t-\t10.0M
";

pub(crate) fn dataset() -> DatasetName {
    DatasetName::new("pool/fs").unwrap()
}

pub(crate) fn snap(name: &str) -> SnapshotName {
    SnapshotName::new(name).unwrap()
}

pub(crate) fn full(name: &str) -> FullSnapshotName {
    FullSnapshotName::parse(name).unwrap()
}

pub(crate) fn layout() -> KeyLayout {
    KeyLayout::new(PREFIX)
}

/// Builds a remote object the way the S3 listing code would: key under [`PREFIX`], name from
/// the key, metadata from the header map.
pub(crate) fn object(name: &str, meta: &[(&str, &str)]) -> RemoteSnapshot {
    let key = format!("{}{name}", layout().prefix());
    let map: BTreeMap<String, String> = meta
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    RemoteSnapshot {
        name: layout().name_of(&key).unwrap().to_owned(),
        key,
        object_size: ESTIMATE,
        meta: ObjectMeta::from_map(&map),
        etag: None,
    }
}

/// The upstream bucket, optionally without some objects.
pub(crate) fn remote_without(skip: &[&str]) -> RemoteIndex {
    RemoteIndex::new(
        S3_OBJECTS
            .iter()
            .filter(|(name, _)| !skip.contains(name))
            .map(|(name, meta)| object(name, meta))
            .collect(),
    )
}

pub(crate) fn remote() -> RemoteIndex {
    remote_without(&[])
}

/// Parses `zfs list -H` lines (first field is the name) into snapshots in list order.
pub(crate) fn parse_list(text: &str) -> Vec<LocalSnapshot> {
    text.lines()
        .zip(1..)
        .map(|(line, txg)| LocalSnapshot {
            name: full(line.split('\t').next().unwrap()),
            guid: 0xbeef + txg,
            createtxg: txg,
            creation: None,
        })
        .collect()
}

/// The chain of `pool/fs` for an upstream listing given as names.
pub(crate) fn local_of(names: &[&str]) -> LocalChain {
    LocalChain::for_dataset(&parse_list(&names.join("\n")), &dataset(), SNAP_PREFIX)
}

pub(crate) fn default_local() -> LocalChain {
    LocalChain::for_dataset(&parse_list(ZFS_LIST), &dataset(), SNAP_PREFIX)
}

/// The commands the original ran for a backup plan (docs/compatibility.md, "Backup and restore plans"),
/// estimate 1234, no `pv`.
pub(crate) fn backup_commands(plan: &BackupPlan, compressor: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for step in &plan.steps {
        let (from, meta) = match &step.kind {
            StepKind::Full => (
                String::new(),
                ObjectMeta {
                    size: Some(ESTIMATE),
                    is_full: true,
                    parent: None,
                    compressor: compressor.map(str::to_owned),
                    encryption: None,
                    ..ObjectMeta::default()
                },
            ),
            StepKind::Incremental { parent } => (
                format!("-i '{parent}' "),
                ObjectMeta {
                    size: Some(ESTIMATE),
                    is_full: false,
                    parent: Some(parent.to_string()),
                    compressor: compressor.map(str::to_owned),
                    encryption: None,
                    ..ObjectMeta::default()
                },
            ),
        };
        let map = meta.to_map();
        // The original passed --meta in this order: size, isfull/parent, compressor.
        let mut metas = vec![format!("--meta size={}", map["size"])];
        if let Some(v) = map.get("isfull") {
            metas.push(format!("--meta isfull={v}"));
        }
        if let Some(v) = map.get("parent") {
            metas.push(format!("--meta parent={v}"));
        }
        if let Some(v) = map.get("compressor") {
            metas.push(format!("--meta compressor={v}"));
        }
        let compress = match compressor {
            Some("pigz1") => "pigz -1 --blocksize 4096 | ",
            Some("pigz4") => "pigz -4 --blocksize 4096 | ",
            _ => "",
        };
        let target = &step.snapshot;
        out.push(format!("zfs send -nvP {from}'{target}'"));
        out.push(format!(
            "zfs send {from}'{target}' | {compress}pput --quiet --estimated {ESTIMATE} {} {}",
            metas.join(" "),
            layout().key(target)
        ));
    }
    out
}

/// The commands the original ran for a restore plan (docs/compatibility.md, "Backup and restore plans"),
/// no `pv`.
pub(crate) fn restore_commands(plan: &RestorePlan, force: bool) -> Vec<String> {
    plan.steps
        .iter()
        .map(|step| {
            let decompress = match step.compressor.as_deref() {
                Some("pigz1" | "pigz4") => "pigz -d | ",
                Some("gpg") => "gpg -d | ",
                _ => "",
            };
            let force = if force { "-F " } else { "" };
            format!(
                "z3_get {} | {decompress}zfs recv {force}{}",
                step.key, step.snapshot
            )
        })
        .collect()
}

//! A simulated year on zfs-fuse and SeaweedFS (issue 14): daily snapshots for a year and hourly
//! ones for its last two days, named with their times, backed up under
//! `PRESERVE = 1y 12m 14d 24h` and pruned as of the next midnight (`Z3_NOW`). Afterwards every
//! backup left restores byte-exact, none through more objects than the policy's four
//! timeframes; the snapshots the next backups build on are held (their `zfs destroy` fails).

use std::collections::BTreeMap;

use crate::support::{RealEnv, assert_no_open_uploads, stderr, stdout, zfs};

const POLICY: &str = "1y 12m 14d 24h";
const NOW: &str = "2026-12-05T00:00:00Z";

/// `snap-YYYY-MM-DD-HHMM` names: 365 dailies at 00:00 ending 2026-12-04, then hourlies at :30
/// for 2026-12-03 and 2026-12-04, in time order.
fn names() -> Vec<String> {
    let first = jiff::civil::date(2025, 12, 5);
    let mut names = Vec::new();
    for day in 0..365 {
        let date = first.checked_add(jiff::Span::new().days(day)).unwrap();
        names.push(format!("snap-{date}-0000"));
        if date >= jiff::civil::date(2026, 12, 3) {
            for hour in 0..24 {
                names.push(format!("snap-{date}-{hour:02}30"));
            }
        }
    }
    names
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story, told in order
async fn a_year_of_snapshots_backed_up_by_policy_and_pruned_restores_every_kept_one_shallowly() {
    let Some(env) = RealEnv::get(
        "a_year_of_snapshots_backed_up_by_policy_and_pruned_restores_every_kept_one_shallowly",
    ) else {
        return;
    };
    let ds = env.dataset("year");
    let policy = [
        ("PRESERVE", POLICY),
        ("NAME_FORMAT", "snap-%Y-%m-%d-%H%M"),
        ("S3_STORAGE_CLASS", "STANDARD"),
        ("Z3_NOW", NOW),
    ];
    let mut content: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for name in names() {
        // A few bytes per snapshot: the file holds the snapshot's own name.
        ds.write("when.txt", &name);
        ds.snapshot(&name);
        content.insert(name.clone(), name.into_bytes());
    }
    let out = env.z3_with(&ds, &["backup"], &policy);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        content.len(),
        "one line per snapshot"
    );

    // The bases of the next backups are held: this year's full and this month's monthly.
    for held in [
        "snap-2025-12-05-0000",
        "snap-2026-01-01-0000",
        "snap-2026-12-01-0000",
    ] {
        let destroyed = std::process::Command::new("zfs")
            .args(["destroy", &format!("{}@{held}", ds.name)])
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        let why = String::from_utf8_lossy(&destroyed.stderr);
        if held == "snap-2025-12-05-0000" {
            // 2025's full is no base any more: not held.
            assert!(destroyed.status.success(), "{why}");
        } else {
            assert!(
                !destroyed.status.success() && why.contains("busy"),
                "{held}: {why}"
            );
        }
    }

    let dry = env.z3_with(&ds, &["prune", "--dry-run"], &policy);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let out = env.z3_with(&ds, &["prune"], &policy);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    let last = summary.lines().last().unwrap_or_default();
    assert!(last.starts_with("pruned "), "{last}");
    assert_eq!(
        stdout(&dry).lines().last(),
        Some(last.replacen("pruned", "would prune", 1).as_str()),
        "the dry run said what the prune did"
    );

    // What is left: every object restores byte-exact, within four objects.
    let store = env.store().await;
    let prefix = format!("{}{}@", ds.prefix, ds.name);
    let left: Vec<String> = z3_s3::ObjectStore::list(&store, &prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key[prefix.len()..].to_owned())
        .collect();
    // 1 yearly, 12 monthlies, 14 dailies and 24 hourlies, some of them the same backup.
    assert!(
        (40..=51).contains(&left.len()),
        "{} left: {left:?}",
        left.len()
    );
    assert!(
        left.contains(&"snap-2026-01-01-0000".to_owned()),
        "the yearly"
    );
    assert!(
        left.contains(&"snap-2026-12-04-2330".to_owned()),
        "the newest"
    );
    assert!(
        !left.contains(&"snap-2026-06-15-0000".to_owned()),
        "an expired daily"
    );
    let target = format!("{}-r", ds.name);
    let mut deepest = 0;
    for name in &left {
        let out = env.z3_with(
            &ds,
            &["restore", name, "--target-dataset", &target],
            &policy,
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let received = stdout(&out).lines().count();
        assert!(
            (1..=4).contains(&received),
            "{name} took {received} objects"
        );
        deepest = deepest.max(received);
        let mountpoint = zfs(&["get", "-H", "-o", "value", "mountpoint", &target]);
        let restored = std::fs::read(format!("{}/when.txt", mountpoint.trim())).unwrap();
        assert_eq!(&restored, &content[name], "{name}");
        crate::support::destroy_retrying(&target).unwrap();
    }
    eprintln!(
        "year tally: {} snapshots backed up, {} objects left after prune, every one restored, the deepest through {deepest}",
        content.len(),
        left.len()
    );
    let status = env.z3_with(&ds, &["status"], &policy);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    assert_no_open_uploads(&store, &ds.prefix).await;

    // The holds are released when the dataset is dropped (support::destroy_retrying).
}

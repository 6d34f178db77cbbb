//! Upstream `_tests/test_ssh_sync.py` `test_snapshots_to_send` and its error cases (docs/compatibility.md,
//! "The original's test suite").

use z3_core::{SnapshotName, SyncError, SyncPlan, plan_sync};

fn names(list: &[&str]) -> Vec<SnapshotName> {
    list.iter().map(|n| SnapshotName::new(n).unwrap()).collect()
}

const ALL: &[&str] = &["S_0", "S_1", "S_2", "S_3", "S_4"];

#[test]
fn test_snapshots_to_send() {
    // (case, local, remote, (base, target)); upstream's noop (S_4, S_4) is Ok(None) here.
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        Option<(Option<&'a str>, &'a str)>,
    );
    let cases: &[Case<'_>] = &[
        ("empty_remote", ALL, &[], Some((None, "S_4"))),
        ("first_sent", ALL, &["S_0"], Some((Some("S_0"), "S_4"))),
        ("latest", ALL, &["S_1", "S_3"], Some((Some("S_3"), "S_4"))),
        ("noop", &ALL[1..], ALL, None),
    ];
    for (case, local, remote, expected) in cases {
        let got = plan_sync(&names(local), &names(remote)).unwrap();
        let expected = expected.map(|(base, target)| SyncPlan {
            base: base.map(|b| SnapshotName::new(b).unwrap()),
            target: SnapshotName::new(target).unwrap(),
        });
        assert_eq!(got, expected, "{case}");
    }
}

#[test]
fn test_snapshots_to_send_error() {
    let err = plan_sync(&[], &[]).unwrap_err();
    assert_eq!(err, SyncError::NoLocalSnapshots);
    assert_eq!(err.to_string(), "No snapshots exist locally!");
    let err = plan_sync(&names(&["S_0"]), &names(&["S_10"])).unwrap_err();
    assert_eq!(err, SyncError::DestinationDiverged);
    assert_eq!(
        err.to_string(),
        "Latest snapshot on destination doesn't exist on source!"
    );
    // An empty source is reported first, whatever the destination holds.
    assert_eq!(
        plan_sync(&[], &names(&["S_0"])).unwrap_err(),
        SyncError::NoLocalSnapshots
    );
}

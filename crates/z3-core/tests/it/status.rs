//! `z3 status` on the upstream fixtures (docs/compatibility.md, "Status output"), including the objects
//! that crashed it.

use z3_core::status::{header_line, render_table, status_rows};
use z3_core::{LocalChain, RemoteIndex, RowKind, StatusRow};

use crate::fixtures::{default_local, object, remote, remote_without};

/// The example of docs/compatibility.md, "Status output", produced upstream without `snap_4_mp` (whose
/// parent crashed status).
const SPEC_EXAMPLE: &str = concat!(
    "backup status for pool/fs@snap_* on mybucket/z3-backup/\n",
    "NAME         | PARENT       | TYPE        | HEALTH         | LOCAL STATE | SIZE\n",
    "snap_0       | snap_expired | incremental | missing parent | ok          |     \n",
    "snap_1_f     |              | full        | ok             | ok          |     \n",
    "snap_2       | snap_1_f     | incremental | ok             | ok          |     \n",
    "snap_3       | snap_2       | incremental | ok             | ok          |     \n",
    "snap_5       | snap_4_mp    | incremental | missing parent | missing     |     \n",
    "snap_6_cycle | snap_7_cycle | incremental | cycle detected | missing     |     \n",
    "snap_7_cycle | snap_6_cycle | incremental | cycle detected | missing     |     \n",
    "snap_8       | -            | missing     | -              | ok          |     \n",
    "snap_9       | -            | missing     | -              | ok          |     \n",
);

/// The whole fixture. `snap_4_mp` now gets a row: its parent has no `@`, so it is shown whole;
/// with `snap_4_mp` in the listing, `snap_5`'s parent exists but is broken.
const FULL_FIXTURE: &str = concat!(
    "NAME         | PARENT         | TYPE        | HEALTH         | LOCAL STATE | SIZE\n",
    "snap_0       | snap_expired   | incremental | missing parent | ok          |     \n",
    "snap_1_f     |                | full        | ok             | ok          |     \n",
    "snap_2       | snap_1_f       | incremental | ok             | ok          |     \n",
    "snap_3       | snap_2         | incremental | ok             | ok          |     \n",
    "snap_4_mp    | missing_parent | incremental | missing parent | missing     |     \n",
    "snap_5       | snap_4_mp      | incremental | parent broken  | missing     |     \n",
    "snap_6_cycle | snap_7_cycle   | incremental | cycle detected | missing     |     \n",
    "snap_7_cycle | snap_6_cycle   | incremental | cycle detected | missing     |     \n",
    "snap_8       | -              | missing     | -              | ok          |     \n",
    "snap_9       | -              | missing     | -              | ok          |     \n",
);

fn report(local: &LocalChain, remote: &RemoteIndex) -> String {
    format!(
        "{}\n{}",
        header_line("pool/fs", "snap_", "mybucket", "z3-backup/"),
        render_table(&status_rows(local, remote))
    )
}

#[test]
fn spec_example_is_reproduced_exactly() {
    let remote = remote_without(&["pool/fs@snap_4_mp"]);
    assert_eq!(report(&default_local(), &remote), SPEC_EXAMPLE);
}

#[test]
fn full_fixture_no_longer_crashes() {
    let rows = status_rows(&default_local(), &remote());
    assert_eq!(render_table(&rows), FULL_FIXTURE);
    let mp = rows.iter().find(|r| r.name == "snap_4_mp").unwrap();
    assert_eq!(
        mp,
        &StatusRow {
            name: "snap_4_mp".into(),
            parent: Some("missing_parent".into()),
            kind: RowKind::Incremental,
            health: Some("missing parent".into()),
            local: false,
            guid_mismatch: false,
            size: None,
        }
    );
    let missing = rows.iter().find(|r| r.name == "snap_9").unwrap();
    assert_eq!(missing.kind, RowKind::Missing);
    assert_eq!(
        (missing.parent.as_ref(), missing.health.as_ref()),
        (None, None)
    );
    assert!(missing.local);
}

#[test]
fn odd_objects_get_rows_and_sizes_are_humanised() {
    // No metadata at all, a name without '@', a parent with two '@', and a sized full object.
    let remote = RemoteIndex::new(vec![
        object("pool/fs@snap_bare", &[]),
        object("no-at-sign", &[("parent", "x")]),
        object("pool/fs@snap_two", &[("parent", "a@b@c")]),
        object(
            "pool/fs@snap_big",
            &[("isfull", "true"), ("size", "12582912")],
        ),
    ]);
    let rows = status_rows(&LocalChain::default(), &remote);
    let table = render_table(&rows);
    assert_eq!(
        table,
        concat!(
            "NAME       | PARENT | TYPE        | HEALTH         | LOCAL STATE | SIZE\n",
            "no-at-sign | x      | incremental | missing parent | missing     |     \n",
            "snap_bare  |        | incremental | missing parent | missing     |     \n",
            "snap_big   |        | full        | ok             | missing     | 12 M\n",
            "snap_two   | b@c    | incremental | missing parent | missing     |     \n",
        )
    );
}

#[test]
fn rows_serialize_with_lowercase_kinds() {
    let rows = status_rows(&default_local(), &remote());
    let json = serde_json::to_value(&rows).unwrap();
    assert_eq!(
        json[1],
        serde_json::json!({
            "name": "snap_1_f",
            "parent": null,
            "kind": "full",
            "health": "ok",
            "local": true,
            "guid_mismatch": false,
            "size": null,
        })
    );
    assert_eq!(json[8]["kind"], "missing");
    assert_eq!(json[8]["health"], serde_json::Value::Null);
    assert_eq!(json[0]["kind"], "incremental");
}

//! `--json` on every command (docs/json.md): backup, restore, verify and prune stream JSON lines
//! (one per event, notes included, then a `finished` line with the exit code and the report or
//! the error); status writes one document; `--all` closes with an `all_finished` line. Every
//! line carries `"schema": 1`, and nothing but JSON reaches stdout. On `FakeZfs` and a
//! `MemoryStore`; `z3_mp_cleanup --json` runs on SeaweedFS in `cleanup`.

use std::sync::Arc;

use serde_json::Value;
use z3_cli::args::{BackupArgs, Cli, Command, PruneArgs, RestoreArgs, StatusArgs, VerifyArgs};
use z3_cli::exit::ExitStatus;
use z3_s3::{ObjectStore, PutOptions};

use crate::engine::{Harness, Run};

/// Every line of `out` as JSON, each checked to carry schema 1.
pub(crate) fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{out}"));
            assert_eq!(value["schema"], 1, "{line}");
            value
        })
        .collect()
}

/// The events of a run, by their `event` tag.
fn events(run: &Run) -> Vec<String> {
    lines(&run.out)
        .iter()
        .map(|l| l["event"].as_str().unwrap().to_owned())
        .collect()
}

fn finished(run: &Run) -> Value {
    let all = lines(&run.out);
    let last = all.last().cloned().expect("a finished line");
    assert_eq!(last["event"], "finished", "{}", run.out);
    last
}

async fn backed_up(h: &Harness) -> Run {
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    h.run(Command::Backup(BackupArgs {
        json: true,
        ..BackupArgs::default()
    }))
    .await
}

#[tokio::test]
async fn backup_streams_one_line_per_snapshot_then_the_report() {
    let h = Harness::new(|_| {});
    let run = backed_up(&h).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        events(&run),
        ["backed_up", "backed_up", "finished"],
        "{}",
        run.out
    );
    let all = lines(&run.out);
    assert_eq!(all[0]["snapshot"], "pool/fs@snap1");
    assert_eq!(all[0]["kind"], "full");
    assert_eq!(all[1]["kind"], "incremental");
    assert_eq!(all[1]["parent"], "pool/fs@snap1");
    assert_eq!(all[1]["key"], "z3-backup/pool/fs@snap2");
    let done = finished(&run);
    assert_eq!(done["command"], "backup");
    assert_eq!(done["dataset"], "pool/fs");
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["report"]["snapshots"].as_array().unwrap().len(), 2);
    let (object, _, _) = h.store.object("z3-backup/pool/fs@snap2").unwrap();
    assert_eq!(
        done["report"]["snapshots"][1]["bytes_stored"],
        object.len(),
        "the object's length as stored"
    );
    // A second run has nothing to do: no event, the report empty, a note on stdout as a line.
    let again = h
        .run(Command::Backup(BackupArgs {
            json: true,
            ..BackupArgs::default()
        }))
        .await;
    assert_eq!(again.status, ExitStatus::Success, "{}", again.err);
    let done = finished(&again);
    assert_eq!(done["report"]["snapshots"], Value::Array(vec![]));
    assert!(
        lines(&again.out)
            .iter()
            .all(|l| l["event"] == "note" || l["event"] == "finished"),
        "{}",
        again.out
    );
}

#[tokio::test]
async fn a_failed_run_ends_with_its_error_and_exit_code() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    // Another run holds the lock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let holder = z3_core::LockRecord {
        owner: "other".into(),
        host: "elsewhere".into(),
        pid: 1,
        acquired: now,
        expires: now + 3600,
        process: None,
    };
    h.store.insert(
        "z3-backup/.z3-locks/pool/fs",
        holder.to_text(),
        &PutOptions::default(),
    );
    let run = h
        .run(Command::Backup(BackupArgs {
            json: true,
            ..BackupArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Locked, "{}", run.out);
    let done = finished(&run);
    assert_eq!(done["exit_code"], 4);
    assert!(
        done["error"].as_str().unwrap().contains("holds the lock"),
        "{done}"
    );
    assert!(done.get("report").is_none(), "{done}");
}

#[tokio::test]
async fn verify_reports_each_object_and_the_exit_code_of_a_failure() {
    let h = Harness::new(|_| {});
    assert_eq!(backed_up(&h).await.status, ExitStatus::Success);
    // Bit rot in the full.
    let key = "z3-backup/pool/fs@snap1";
    let (data, metadata, _) = h.store.object(key).unwrap();
    let mut data = data.to_vec();
    data[0] ^= 1;
    h.store.insert(
        key,
        data,
        &PutOptions {
            metadata,
            ..PutOptions::default()
        },
    );
    let run = h
        .run(Command::Verify(VerifyArgs {
            all: true,
            json: true,
            ..VerifyArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert_eq!(events(&run), ["verified", "verified", "finished"]);
    let all = lines(&run.out);
    assert_eq!(all[0]["name"], "pool/fs@snap1");
    assert_eq!(all[0]["verdict"], "failed");
    assert_eq!(all[1]["verdict"], "ok");
    let done = finished(&run);
    assert_eq!(done["exit_code"], 3, "the process's exit code");
    assert_eq!(done["report"]["objects"].as_array().unwrap().len(), 2);
    // The human summary line is not printed.
    assert!(!run.out.contains("verified 2 objects"), "{}", run.out);
}

#[tokio::test]
async fn restore_and_status_speak_json_too() {
    let h = Harness::new(|_| {});
    assert_eq!(backed_up(&h).await.status, ExitStatus::Success);
    let status = h
        .run(Command::Status(StatusArgs {
            json: true,
            ..StatusArgs::default()
        }))
        .await;
    assert_eq!(status.status, ExitStatus::Success, "{}", status.err);
    // One pretty document, not lines.
    let doc: Value = serde_json::from_str(&status.out).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["dataset"], "pool/fs");
    assert_eq!(doc["healthy"], true);

    let other = h.other_machine();
    let run = other
        .run(Command::Restore(RestoreArgs {
            snapshot: "snap2".into(),
            json: true,
            ..RestoreArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(events(&run), ["restored", "restored", "finished"]);
    let all = lines(&run.out);
    assert_eq!(all[1]["snapshot"], "pool/fs@snap2");
    assert_eq!(all[1]["checked"], true, "the digest was checked");
    assert_eq!(finished(&run)["command"], "restore");
    assert_eq!(other.zfs.content("pool/fs").as_deref(), Some(&b"two"[..]));
}

#[tokio::test]
async fn prune_streams_what_it_deletes_and_keeps() {
    let h = Harness::new(|raw| {
        raw.preserve = Some("1d".into());
        raw.name_format = Some("snap-%Y-%m-%d".into());
        raw.s3_storage_class = Some("STANDARD".into());
    });
    for day in ["2026-03-01", "2026-03-02", "2026-03-03"] {
        h.snap(&format!("snap-{day}"), day);
    }
    let run = h
        .run(Command::Backup(BackupArgs {
            full: true,
            ..BackupArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let run = h
        .run(Command::Prune(PruneArgs {
            dry_run: true,
            json: true,
            ..PruneArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let all = lines(&run.out);
    let done = finished(&run);
    assert_eq!(done["command"], "prune");
    assert_eq!(done["report"]["dry_run"], true);
    let pruned = all.iter().filter(|l| l["event"] == "pruned").count();
    let kept = all.iter().filter(|l| l["event"] == "kept").count();
    assert_eq!(
        pruned,
        done["report"]["deleted"].as_array().unwrap().len(),
        "{}",
        run.out
    );
    assert_eq!(kept, done["report"]["kept"].as_array().unwrap().len());
    assert!(kept >= 1, "{}", run.out);
    assert!(!run.out.contains("would prune"), "{}", run.out);
}

#[tokio::test]
async fn backup_all_ends_with_one_line_for_the_whole_run() {
    let h = Harness::new(|_| {});
    h.zfs.create_dataset("pool/other").unwrap();
    h.snap("snap1", "one");
    h.zfs.write("pool/other", "x".to_owned()).unwrap();
    h.zfs.snapshot("pool/other@snap1").unwrap();
    let file = z3_cli::config::IniFile::parse(
        "[main]\nBUCKET=bkt\nCOMPRESSOR=none\n[fs:pool/fs]\n[fs:pool/missing]\n[fs:pool/other]\n",
        None,
    )
    .unwrap();
    let cli = <Cli as clap::Parser>::parse_from(["z3", "backup", "--all", "--json"]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut console = z3_cli::engine::Console {
        out: &mut out,
        err: &mut err,
    };
    let store: Arc<dyn ObjectStore> = Arc::new(h.store.clone());
    let env = vec![("SNAPSHOT_PREFIX".to_owned(), "snap".to_owned())];
    let status = z3_cli::run_all(
        &cli,
        &file,
        &env,
        Arc::new(h.zfs.clone()),
        store,
        &mut console,
    )
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        status,
        ExitStatus::Error,
        "{out}{}",
        String::from_utf8_lossy(&err)
    );
    let all = lines(&out);
    let finished: Vec<&Value> = all.iter().filter(|l| l["event"] == "finished").collect();
    assert_eq!(finished.len(), 3, "{out}");
    assert_eq!(finished[0]["dataset"], "pool/fs");
    assert_eq!(finished[1]["dataset"], "pool/missing");
    assert_eq!(finished[1]["exit_code"], 1);
    assert!(finished[1]["error"].is_string(), "{out}");
    let last = all.last().unwrap();
    assert_eq!(last["event"], "all_finished");
    assert_eq!(last["exit_code"], 1);
    assert_eq!(last["datasets"][2]["dataset"], "pool/other");
    assert_eq!(last["datasets"][2]["exit_code"], 0);
    assert!(!out.contains("(exit "), "no text summary: {out}");
}

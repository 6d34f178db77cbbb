//! `z3_ssh_sync`'s decisions and failure paths on two `FakeZfs` hosts (docs/compatibility.md,
//! "`z3_ssh_sync`" and "The original's test suite").

use std::sync::Arc;

use z3_cli::engine::Console;
use z3_cli::exit::{ExitStatus, classify};
use z3_cli::interrupt::Interrupt;
use z3_cli::progress::{Bars, ProgressMode};
use z3_cli::sync::{Side, Sync};
use z3_core::DatasetName;
use z3_zfs::fake::FakeZfs;

struct Hosts {
    local: FakeZfs,
    remote: FakeZfs,
}

struct Outcome {
    status: ExitStatus,
    out: String,
    err: String,
}

impl Hosts {
    /// `local` has `local/fs` with the given snapshots (each with its own content);
    /// `remote` has the pool `remote` only, unless snapshots are given for `remote/fs`.
    async fn new(local: &[&str], remote: &[&str]) -> Self {
        let hosts = Self {
            local: FakeZfs::new(),
            remote: FakeZfs::new(),
        };
        hosts.local.create_dataset("local").unwrap();
        hosts.local.create_dataset("local/fs").unwrap();
        hosts.remote.create_dataset("remote").unwrap();
        for snap in local {
            hosts
                .local
                .write("local/fs", format!("data of {snap}"))
                .unwrap();
            hosts.local.snapshot(&format!("local/fs@{snap}")).unwrap();
        }
        hosts.push_to_remote(remote).await;
        hosts
    }

    /// Gives the remote the same snapshots as local (same guids), sent one by one.
    async fn push_to_remote(&self, snaps: &[&str]) {
        let mut prev: Option<String> = None;
        for snap in snaps {
            let name =
                |ds: &str, s: &str| z3_core::FullSnapshotName::parse(&format!("{ds}@{s}")).unwrap();
            let from = prev.as_ref().map(|p| name("local/fs", p));
            let to = name("local/fs", snap);
            let mut stream = z3_zfs::Zfs::send(&self.local, from.as_ref(), &to)
                .await
                .unwrap();
            let target = name("remote/fs", snap);
            let mut sink =
                z3_zfs::Zfs::receive(&self.remote, &target, &z3_zfs::ReceiveOptions::default())
                    .await
                    .unwrap();
            tokio::io::copy(&mut stream, &mut sink).await.unwrap();
            sink.finish().await.unwrap();
            prev = Some((*snap).to_owned());
        }
    }

    fn sync(&self, pull: bool, dry_run: bool) -> Sync {
        let here = Side {
            zfs: Arc::new(self.local.clone()),
            dataset: DatasetName::new("local/fs").unwrap(),
            label: "local/fs".into(),
        };
        let there = Side {
            zfs: Arc::new(self.remote.clone()),
            dataset: DatasetName::new("remote/fs").unwrap(),
            label: "example.com:remote/fs".into(),
        };
        let (source, destination) = if pull { (there, here) } else { (here, there) };
        let plan = z3_engine::sync::Sync {
            source,
            destination,
            prefix: "S_".into(),
            dry_run,
            force: false,
            progress: Arc::new(Bars(ProgressMode::Never)),
        };
        Sync { plan, quiet: false }
    }

    async fn run(&self, sync: &Sync) -> Outcome {
        self.run_with(sync, &Interrupt::new()).await
    }

    async fn run_with(&self, sync: &Sync, interrupt: &Interrupt) -> Outcome {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = {
            let mut console = Console {
                out: &mut out,
                err: &mut err,
            };
            sync.run(&mut console, interrupt).await
        };
        let mut err = String::from_utf8(err).unwrap();
        let status = match result {
            Ok(()) => ExitStatus::Success,
            Err(e) => {
                err = format!("{err}{e:#}\n");
                classify(&e)
            }
        };
        Outcome {
            status,
            out: String::from_utf8(out).unwrap(),
            err,
        }
    }
}

const ALL: [&str; 5] = ["S_0", "S_1", "S_2", "S_3", "S_4"];

/// The original's `test_snapshots_to_send` table (docs/compatibility.md, "The original's test suite"), as
/// what actually lands on the destination.
#[tokio::test]
async fn decision_table_of_the_original() {
    // (local, remote) -> snapshots sent, oldest first.
    let cases: [(&[&str], &[&str], &[&str]); 4] = [
        (&ALL, &[], &["S_4"]), // empty_remote: the latest, full
        (&ALL, &["S_0"], &["S_1", "S_2", "S_3", "S_4"]), // first_sent: -I S_0 S_4
        (&ALL, &["S_0", "S_1", "S_2", "S_3"], &["S_4"]), // latest (the remote's newest is S_3)
        (&ALL[1..], &ALL[1..], &[]), // noop
    ];
    for (local, remote, sent) in cases {
        let hosts = Hosts::new(local, remote).await;
        let run = hosts.run(&hosts.sync(false, false)).await;
        assert_eq!(
            run.status,
            ExitStatus::Success,
            "{local:?} {remote:?}: {}",
            run.err
        );
        let lines: Vec<&str> = run.out.lines().collect();
        assert_eq!(lines.len(), sent.len(), "{local:?} {remote:?}: {}", run.out);
        for (line, snap) in lines.iter().zip(sent) {
            assert!(
                line.starts_with(&format!("Sent local/fs@{snap} (")),
                "{line}"
            );
            assert!(
                line.contains(&format!(" to example.com:remote/fs@{snap}: ")),
                "{line}"
            );
        }
        if sent.is_empty() {
            assert_eq!(run.err, "Nothing to do here.\n");
        }
        let mut expected: Vec<&str> = remote.to_vec();
        expected.extend_from_slice(sent);
        assert_eq!(hosts.remote.snapshot_names("remote/fs"), expected);
        assert_eq!(
            hosts.remote.content("remote/fs"),
            hosts.local.content("local/fs"),
            "{local:?} {remote:?}"
        );
    }
}

#[tokio::test]
async fn the_two_errors_of_the_original() {
    let hosts = Hosts::new(&[], &[]).await;
    let run = hosts.run(&hosts.sync(false, false)).await;
    assert_eq!(run.status, ExitStatus::Error);
    assert_eq!(
        run.err,
        "no snapshots matching 'S_' on local/fs: No snapshots exist locally!\n"
    );

    // The remote's latest snapshot is unknown here: refused, exit 3.
    let hosts = Hosts::new(&["S_0"], &["S_0"]).await;
    hosts.local.snapshot("local/fs@S_1").unwrap();
    hosts.remote.snapshot("remote/fs@S_10").unwrap();
    let run = hosts.run(&hosts.sync(false, false)).await;
    assert_eq!(run.status, ExitStatus::Integrity);
    assert_eq!(
        run.err,
        "Latest snapshot on destination doesn't exist on source! (example.com:remote/fs@S_10 is not on local/fs)\n"
    );
}

#[tokio::test]
async fn a_recreated_base_with_the_same_name_is_refused() {
    let hosts = Hosts::new(&["S_0"], &["S_0"]).await;
    hosts.local.write("local/fs", "new").unwrap();
    // S_0 destroyed and re-created on the destination: same name, another snapshot.
    hosts.remote.destroy_dataset("remote/fs").unwrap();
    hosts.remote.create_dataset("remote/fs").unwrap();
    hosts.remote.snapshot("remote/fs@S_0").unwrap();
    hosts.local.snapshot("local/fs@S_1").unwrap();
    let run = hosts.run(&hosts.sync(false, false)).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err
            .contains("are different snapshots with the same name (guid "),
        "{}",
        run.err
    );
}

#[tokio::test]
async fn pull_brings_the_remote_snapshots_here() {
    let hosts = Hosts::new(&["S_0", "S_1"], &["S_0", "S_1"]).await;
    hosts.local.destroy_dataset("local/fs").unwrap();
    let run = hosts.run(&hosts.sync(true, false)).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        run.out.lines().next().unwrap().split(':').next().unwrap(),
        "Sent example.com"
    );
    assert_eq!(hosts.local.snapshot_names("local/fs"), ["S_1"]);
    assert_eq!(
        hosts.local.content("local/fs"),
        hosts.remote.content("remote/fs")
    );
}

#[tokio::test]
async fn a_dry_run_sends_nothing() {
    let hosts = Hosts::new(&ALL, &["S_0"]).await;
    let before = (hosts.local.calls().len(), hosts.remote.calls().len());
    let run = hosts.run(&hosts.sync(false, true)).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        run.out,
        "would send local/fs@S_1 (incremental from S_0) to example.com:remote/fs@S_1\n\
         would send local/fs@S_2 (incremental from S_1) to example.com:remote/fs@S_2\n\
         would send local/fs@S_3 (incremental from S_2) to example.com:remote/fs@S_3\n\
         would send local/fs@S_4 (incremental from S_3) to example.com:remote/fs@S_4\n"
    );
    let calls = |zfs: &FakeZfs, from: usize| zfs.calls()[from..].to_vec();
    for call in calls(&hosts.local, before.0)
        .iter()
        .chain(&calls(&hosts.remote, before.1))
    {
        assert!(call.starts_with("list "), "a dry run ran {call}");
    }
    assert_eq!(hosts.remote.snapshot_names("remote/fs"), ["S_0"]);
}

#[tokio::test]
async fn a_failing_receive_fails_the_sync_and_stops_it() {
    let hosts = Hosts::new(&ALL, &["S_0"]).await;
    hosts
        .remote
        .fail_next_receive("cannot receive: out of space");
    let run = hosts.run(&hosts.sync(false, false)).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(
        run.err.contains(
            "sending local/fs@S_1 (incremental from S_0) to example.com:remote/fs@S_1 failed"
        ),
        "{}",
        run.err
    );
    assert!(run.err.contains("out of space"), "{}", run.err);
    assert_eq!(
        hosts.remote.snapshot_names("remote/fs"),
        ["S_0"],
        "nothing after the failure"
    );
    assert_eq!(run.out, "");
}

#[tokio::test]
async fn a_failing_send_kills_the_receiver() {
    let hosts = Hosts::new(&ALL, &[]).await;
    hosts.local.fail_next_send(10);
    let run = hosts.run(&hosts.sync(false, false)).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(
        run.err
            .contains("sending local/fs@S_4 (full) to example.com:remote/fs@S_4 failed"),
        "{}",
        run.err
    );
    assert!(
        !hosts.remote.exists("remote/fs"),
        "a partial stream was committed"
    );
}

#[tokio::test]
async fn a_touched_destination_is_refused_unless_forced() {
    let hosts = Hosts::new(&["S_0"], &["S_0"]).await;
    hosts.local.write("local/fs", "one more").unwrap();
    hosts.local.snapshot("local/fs@S_1").unwrap();
    hosts.remote.write("remote/fs", "touched").unwrap();
    let run = hosts.run(&hosts.sync(false, false)).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(run.err.contains("has been modified"), "{}", run.err);
    let mut forced = hosts.sync(false, false);
    forced.plan.force = true;
    let run = hosts.run(&forced).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(hosts.remote.snapshot_names("remote/fs"), ["S_0", "S_1"]);
    assert_eq!(
        hosts.remote.content("remote/fs"),
        hosts.local.content("local/fs")
    );
}

#[tokio::test]
async fn an_interrupt_kills_send_and_receive_and_commits_nothing() {
    let hosts = Hosts::new(&ALL, &[]).await;
    hosts.local.stall_next_send(100);
    let interrupt = Interrupt::new();
    let sync = hosts.sync(false, false);
    let running = hosts.run_with(&sync, &interrupt);
    tokio::pin!(running);
    while hosts.local.stalled_sends() == 0 {
        tokio::select! {
            run = &mut running => panic!("the sync ended by itself: {}", run.err),
            () = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
        }
    }
    interrupt.trigger(2);
    let run = running.await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(
        run.err
            .contains("bytes: zfs send and zfs receive were killed"),
        "{}",
        run.err
    );
    assert!(
        !hosts.remote.exists("remote/fs"),
        "a partial stream was committed"
    );
    // The stalled send was killed (the fake's stream is dropped).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while hosts.local.stalled_sends() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "zfs send was not stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

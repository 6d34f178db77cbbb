//! The engine's decisions and failure paths on `FakeZfs` and `MemoryStore`: no pool, no network.

use std::collections::BTreeMap;
use std::sync::Arc;

use z3_cli::args::{BackupArgs, Command, RestoreArgs, StatusArgs};
use z3_cli::config::{RawConfig, Settings};
use z3_cli::engine::{Console, Engine};
use z3_cli::exit::{ExitStatus, classify};
use z3_s3::{MemoryStore, ObjectStore, PutOptions};
use z3_zfs::fake::FakeZfs;

pub(crate) struct Harness {
    pub(crate) zfs: FakeZfs,
    pub(crate) store: MemoryStore,
    settings: Settings,
    engine: Engine,
}

pub(crate) struct Run {
    pub(crate) status: ExitStatus,
    pub(crate) out: String,
    pub(crate) err: String,
}

impl Harness {
    pub(crate) fn new(configure: impl FnOnce(&mut RawConfig)) -> Self {
        let mut raw = RawConfig {
            bucket: Some("bkt".into()),
            filesystem: Some("pool/fs".into()),
            snapshot_prefix: Some("snap".into()),
            compressor: Some("none".into()),
            s3_prefix: Some("z3-backup/".into()),
            ..RawConfig::default()
        };
        configure(&mut raw);
        let settings = Settings::resolve(raw).unwrap();
        let zfs = FakeZfs::new();
        zfs.create_dataset("pool/fs").unwrap();
        let store = MemoryStore::new("bkt");
        let engine = Engine::new(
            Arc::new(zfs.clone()),
            Arc::new(store.clone()),
            settings.clone(),
        );
        Self {
            zfs,
            store,
            settings,
            engine,
        }
    }

    /// The same machine and bucket, reached through `store` (e.g. a `FaultyStore` around
    /// `self.store`); `store` of the result stays the plain memory store, for inspection.
    pub(crate) fn with_store(&self, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            zfs: self.zfs.clone(),
            store: self.store.clone(),
            settings: self.settings.clone(),
            engine: Engine::new(Arc::new(self.zfs.clone()), store, self.settings.clone()),
        }
    }

    /// The same machine with another bucket, `store` (e.g. one with Object Lock).
    pub(crate) fn with_memory_store(&self, store: MemoryStore) -> Self {
        Self {
            zfs: self.zfs.clone(),
            engine: Engine::new(
                Arc::new(self.zfs.clone()),
                Arc::new(store.clone()),
                self.settings.clone(),
            ),
            store,
            settings: self.settings.clone(),
        }
    }

    /// The same bucket and settings on a machine whose `zfs` is `zfs` (e.g. a `ZfsCli` of a
    /// missing program); `zfs` of the result stays the fake, unused.
    pub(crate) fn with_zfs(&self, zfs: Arc<dyn z3_zfs::Zfs>) -> Self {
        Self {
            zfs: self.zfs.clone(),
            store: self.store.clone(),
            settings: self.settings.clone(),
            engine: Engine::new(zfs, Arc::new(self.store.clone()), self.settings.clone()),
        }
    }

    /// The same machine and bucket, with the engine's time from `clock`.
    pub(crate) fn with_clock(self, clock: Arc<dyn z3_engine::Clock>) -> Self {
        Self {
            engine: self.engine.with_clock(clock),
            ..self
        }
    }

    /// The same machine and bucket with changed settings.
    pub(crate) fn with_settings_of(&self, configure: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        Self {
            zfs: self.zfs.clone(),
            store: self.store.clone(),
            engine: Engine::new(
                Arc::new(self.zfs.clone()),
                Arc::new(self.store.clone()),
                settings.clone(),
            ),
            settings,
        }
    }

    /// Another host with an empty pool, sharing the bucket.
    pub(crate) fn other_machine(&self) -> Self {
        let zfs = FakeZfs::new();
        zfs.create_dataset("pool").unwrap();
        let engine = Engine::new(
            Arc::new(zfs.clone()),
            Arc::new(self.store.clone()),
            self.settings.clone(),
        );
        Self {
            zfs,
            store: self.store.clone(),
            settings: self.settings.clone(),
            engine,
        }
    }

    pub(crate) fn snap(&self, name: &str, content: &str) {
        self.zfs.write("pool/fs", content.to_owned()).unwrap();
        self.zfs.snapshot(&format!("pool/fs@{name}")).unwrap();
    }

    pub(crate) async fn run(&self, command: Command) -> Run {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let result = {
            let mut console = Console {
                out: &mut out,
                err: &mut err,
            };
            z3_cli::execute(&self.engine, &command, &mut console).await
        };
        let mut err = String::from_utf8(err).unwrap();
        let status = match result {
            Ok(status) => status,
            Err(e) => {
                err = format!("{err}{e:#}\n");
                classify(&e)
            }
        };
        Run {
            status,
            out: String::from_utf8(out).unwrap(),
            err,
        }
    }

    /// `z3 status --check` with the default thresholds (26h, 50h).
    pub(crate) async fn check(&self) -> z3_core::check::Check {
        let args = z3_cli::args::StatusArgs {
            check: true,
            warn_age: std::time::Duration::from_hours(26),
            crit_age: std::time::Duration::from_hours(50),
            ..StatusArgs::default()
        };
        self.engine.check(&args).await.unwrap()
    }

    pub(crate) fn put(&self, name: &str, meta: &[(&str, &str)]) {
        let metadata: BTreeMap<String, String> = meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.store.insert(
            format!("z3-backup/{name}"),
            b"spam".to_vec(),
            &PutOptions {
                metadata,
                ..PutOptions::default()
            },
        );
    }
}

pub(crate) fn backup() -> BackupArgs {
    BackupArgs::default()
}

pub(crate) fn restore(snapshot: &str) -> RestoreArgs {
    RestoreArgs {
        snapshot: snapshot.into(),
        ..RestoreArgs::default()
    }
}

#[tokio::test]
async fn first_backup_is_full_then_incrementals_chain_up() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(run.out, "Successfuly backed up pool/fs@snap1: 0 M.\n");
    let (_, meta, class) = h.store.object("z3-backup/pool/fs@snap1").unwrap();
    assert_eq!(meta.get("isfull").map(String::as_str), Some("true"));
    assert!(meta.contains_key("size"));
    assert!(!meta.contains_key("parent"));
    assert_eq!(class.as_deref(), Some("STANDARD_IA"));

    h.snap("snap2", "two");
    h.snap("snap3", "three");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        run.out,
        "Successfuly backed up pool/fs@snap2: 0 M.\nSuccessfuly backed up pool/fs@snap3: 0 M.\n"
    );
    let (_, meta, _) = h.store.object("z3-backup/pool/fs@snap3").unwrap();
    assert_eq!(
        meta.get("parent").map(String::as_str),
        Some("pool/fs@snap2")
    );
    assert!(!meta.contains_key("isfull"));

    // Up to date: nothing uploaded, a note on stderr, success.
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success);
    assert_eq!(run.out, "");
    assert!(run.err.contains("already backed up"), "{}", run.err);
    assert_eq!(h.store.open_uploads(), 0);
}

#[tokio::test]
async fn restore_rebuilds_a_destroyed_dataset() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    h.snap("snap3", "three");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    h.zfs.destroy_dataset("pool/fs").unwrap();

    let run = h.run(Command::Restore(restore("snap3"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        run.out,
        "Restored pool/fs@snap1.\nRestored pool/fs@snap2.\nRestored pool/fs@snap3.\n"
    );
    assert_eq!(h.zfs.snapshot_names("pool/fs"), ["snap1", "snap2", "snap3"]);
    assert_eq!(h.zfs.content("pool/fs").as_deref(), Some(&b"three"[..]));

    // Already there: a no-op.
    let run = h.run(Command::Restore(restore("snap3"))).await;
    assert_eq!(run.status, ExitStatus::Success);
    assert!(run.err.contains("exists locally"), "{}", run.err);
}

#[tokio::test]
async fn restore_starts_from_the_local_base_after_the_full_expired() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );

    // A second machine restores up to snap2 from the bucket.
    let other = h.other_machine();
    let run = other.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);

    // Later: snap3 is backed up, and a lifecycle rule expires the full (bug 3 of the original,
    // docs/compatibility.md).
    h.snap("snap3", "three");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    h.store.delete("z3-backup/pool/fs@snap1").await.unwrap();

    // The second machine's local snap2 is a sufficient base.
    let run = other.run(Command::Restore(restore("snap3"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(run.out, "Restored pool/fs@snap3.\n");
    assert_eq!(other.zfs.content("pool/fs").as_deref(), Some(&b"three"[..]));

    // A third machine with nothing local cannot reach a full any more: refused as broken.
    let third = h.other_machine();
    let run = third.run(Command::Restore(restore("snap3"))).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err
            .contains("Broken snapshot detected pool/fs@snap3, reason: 'parent broken'"),
        "{}",
        run.err
    );
    assert!(!third.zfs.calls().iter().any(|c| c.starts_with("receive")));
}

#[tokio::test]
async fn failing_send_aborts_and_leaves_no_object() {
    let h = Harness::new(|_| {});
    h.snap("snap1", &"x".repeat(10_000));
    h.zfs.fail_next_send(1000);
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Error);
    assert!(
        run.err.contains("backup of pool/fs@snap1 failed"),
        "{}",
        run.err
    );
    assert_eq!(run.out, "");
    assert!(h.store.objects().is_empty());
    assert_eq!(h.store.open_uploads(), 0);
    // The next run succeeds and is still a full.
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let (_, meta, _) = h.store.object("z3-backup/pool/fs@snap1").unwrap();
    assert_eq!(meta.get("isfull").map(String::as_str), Some("true"));
}

#[tokio::test]
async fn dry_run_only_reads() {
    let h = Harness::new(|raw| raw.compressor = Some("pigz4".into()));
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    let run = h
        .run(Command::Backup(BackupArgs {
            dry_run: true,
            ..backup()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let lines: Vec<&str> = run.out.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.out);
    assert!(lines[0].starts_with("would back up pool/fs@snap1 (full, estimated "));
    assert!(lines[0].ends_with(
        "zfs send pool/fs@snap1 | pigz -4 --blocksize 4096 -> s3://bkt/z3-backup/pool/fs@snap1 (STANDARD_IA)"
    ));
    assert!(lines[1].contains("zfs send -i pool/fs@snap1 pool/fs@snap2"));
    assert!(!run.out.contains("Successfuly"));
    assert!(h.store.objects().is_empty());
    assert!(
        !h.zfs.calls().iter().any(|c| c.starts_with("send")),
        "{:?}",
        h.zfs.calls()
    );
}

#[tokio::test]
async fn send_flags_come_from_the_config_and_raw_and_show_in_a_dry_run() {
    let h = Harness::new(|raw| raw.send_flags = Some("cL".into()));
    h.zfs
        .set_send_flags(z3_zfs::SendFlags::from_metadata("wcLe").unwrap());
    h.snap("snap1", "one");
    let dry_raw = BackupArgs {
        dry_run: true,
        raw: true,
        ..backup()
    };
    let run = h.run(Command::Backup(dry_raw)).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(
        run.out.contains("zfs send -w -c -L pool/fs@snap1 -> s3://"),
        "{}",
        run.out
    );
    // A zfs without -w: --raw is a usage error naming the flag, and nothing is written.
    h.zfs
        .set_send_flags(z3_zfs::SendFlags::from_metadata("cLe").unwrap());
    let raw = BackupArgs {
        raw: true,
        ..backup()
    };
    let run = h.run(Command::Backup(raw)).await;
    assert_eq!(run.status, ExitStatus::Usage, "{}", run.err);
    assert!(run.err.contains("zfs send -w"), "{}", run.err);
    assert!(h.store.object("z3-backup/pool/fs@snap1").is_none());
    // Without --raw the configured flags are used and recorded.
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let (_, meta, _) = h.store.object("z3-backup/pool/fs@snap1").unwrap();
    assert_eq!(meta.get("send-flags").map(String::as_str), Some("cL"));
}

#[tokio::test]
async fn parseable_output_uses_nul_separators() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    let run = h
        .run(Command::Backup(BackupArgs {
            parseable: true,
            ..backup()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let (name, size) = run.out.trim_end_matches('\n').split_once('\0').unwrap();
    assert_eq!(name, "pool/fs@snap1");
    assert!(size.parse::<u64>().unwrap() > 0);
}

#[tokio::test]
async fn broken_remote_chain_is_refused_with_exit_code_3() {
    let h = Harness::new(|_| {});
    for (name, content) in [("snap1", "1"), ("snap3", "3"), ("snap4", "4")] {
        h.snap(name, content);
    }
    h.put("pool/fs@snap1", &[("isfull", "true")]);
    h.put("pool/fs@snap3", &[("parent", "pool/fs@snap2")]);
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Integrity);
    assert!(
        run.err
            .contains("Broken snapshot detected pool/fs@snap3, reason: 'missing parent'"),
        "{}",
        run.err
    );
    assert!(!h.zfs.calls().iter().any(|c| c.starts_with("send")));
}

#[tokio::test]
async fn status_survives_foreign_and_odd_objects() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "1");
    h.put("pool/fs@snap1", &[("isfull", "true"), ("size", "1234")]);
    h.put("pool/fs@snap_nometa", &[]);
    h.put("pool/fs@snap_4_mp", &[("parent", "missing_parent")]);
    h.put("pool/fs@snap_legacy", &[("is_full", "true")]);
    let run = h.run(Command::Status(StatusArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    let lines: Vec<&str> = run.out.lines().collect();
    assert_eq!(
        lines[0],
        "backup status for pool/fs@snap* on bkt/z3-backup/"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("snap1 ") && l.contains("| full "))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("snap_legacy ") && l.contains("| full "))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("snap_4_mp ") && l.contains("missing parent"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("snap_nometa ") && l.contains("missing parent"))
    );

    let run = h
        .run(Command::Status(StatusArgs {
            json: true,
            ..StatusArgs::default()
        }))
        .await;
    let doc: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    assert_eq!(doc["healthy"], false);
    assert_eq!(doc["rows"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn unknown_codec_fails_before_zfs_receive() {
    let h = Harness::new(|_| {});
    h.put(
        "pool/fs@snap1",
        &[("isfull", "true"), ("compressor", "zstd-9000")],
    );
    h.zfs.destroy_dataset("pool/fs").unwrap();
    let run = h.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(run.status, ExitStatus::Error);
    assert!(run.err.contains("zstd-9000"), "{}", run.err);
    assert!(
        !h.zfs.calls().iter().any(|c| c.starts_with("receive")),
        "{:?}",
        h.zfs.calls()
    );
}

#[tokio::test]
async fn nothing_to_backup_names_the_effective_values() {
    let h = Harness::new(|raw| raw.snapshot_prefix = Some("daily".into()));
    h.snap("snap1", "1");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Error);
    assert_eq!(
        run.err.trim_end(),
        "Nothing to backup for filesystem \"pool/fs\". Are you sure SNAPSHOT_PREFIX=\"daily\" is correct?"
    );
}

#[tokio::test]
async fn unknown_restore_target_is_an_error() {
    let h = Harness::new(|_| {});
    let run = h.run(Command::Restore(restore("snap9"))).await;
    assert_eq!(run.status, ExitStatus::Error);
    assert!(
        run.err.contains("no such snapshot \"pool/fs@snap9\""),
        "{}",
        run.err
    );
    let run = h.run(Command::Restore(restore("bad name!"))).await;
    assert_eq!(run.status, ExitStatus::Usage);
}

/// A fresh age key pair: the public key and an identity file holding the secret key.
pub(crate) fn age_key(dir: &std::path::Path, name: &str) -> (String, std::path::PathBuf) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    (identity.to_public().to_string(), path)
}

impl Harness {
    /// Another host sharing the bucket, with its own settings.
    pub(crate) fn other_machine_with(&self, configure: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        let zfs = FakeZfs::new();
        zfs.create_dataset("pool").unwrap();
        let engine = Engine::new(
            Arc::new(zfs.clone()),
            Arc::new(self.store.clone()),
            settings.clone(),
        );
        Self {
            zfs,
            store: self.store.clone(),
            settings,
            engine,
        }
    }
}

#[tokio::test]
async fn age_encrypted_backups_restore_only_with_the_right_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (public, identity) = age_key(dir.path(), "key.txt");
    let (_, stranger) = age_key(dir.path(), "other.txt");
    // The backup host has the public key only.
    let h = Harness::new(|raw| raw.age_recipients = Some(public.clone()));
    h.snap("snap1", "the plaintext one");
    h.snap("snap2", "the plaintext two");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    for name in ["pool/fs@snap1", "pool/fs@snap2"] {
        let (body, meta, _) = h.store.object(&format!("z3-backup/{name}")).unwrap();
        assert_eq!(
            meta.get("encryption").map(String::as_str),
            Some("age"),
            "{name}"
        );
        assert_eq!(
            meta.get("compressor"),
            None,
            "compressor none writes no metadata"
        );
        assert!(body.starts_with(b"age-encryption.org/v1\n-> X25519 "));
        assert!(
            !body.windows(9).any(|w| w == b"plaintext"),
            "{name} holds plaintext"
        );
    }

    // No identity configured: refused before anything is downloaded or received.
    let lost = h.other_machine_with(|_| {});
    let run = lost.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Usage, "{}", run.err);
    assert!(
        run.err.contains("is age-encrypted") && run.err.contains("--age-identity"),
        "{}",
        run.err
    );
    assert!(!lost.zfs.calls().iter().any(|c| c.starts_with("receive")));

    // The wrong key: the restore fails and nothing is committed.
    let wrong = h.other_machine_with(|s| s.age.identity_file = Some(stranger.clone()));
    let run = wrong.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(
        run.err.contains("none of the age identities"),
        "{}",
        run.err
    );
    assert!(wrong.zfs.snapshot_names("pool/fs").is_empty());

    let right = h.other_machine_with(|s| s.age.identity_file = Some(identity.clone()));
    let run = right.run(Command::Restore(restore("snap2"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(right.zfs.snapshot_names("pool/fs"), ["snap1", "snap2"]);
    assert_eq!(
        right.zfs.content("pool/fs").as_deref(),
        Some(&b"the plaintext two"[..])
    );
}

#[tokio::test]
async fn unknown_encryption_in_metadata_fails_before_zfs_receive() {
    let h = Harness::new(|_| {});
    h.put(
        "pool/fs@snap1",
        &[("isfull", "true"), ("encryption", "rot13")],
    );
    h.zfs.destroy_dataset("pool/fs").unwrap();
    let run = h.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(run.status, ExitStatus::Error);
    assert!(
        run.err.contains("unknown encryption \"rot13\"")
            && run.err.contains("z3-backup/pool/fs@snap1"),
        "{}",
        run.err
    );
    assert!(!h.zfs.calls().iter().any(|c| c.starts_with("receive")));
}

#[tokio::test]
async fn configured_compressors_run_their_programs_and_are_recorded() {
    let ini = z3_cli::config::IniFile::parse(
        "[compressor:b64]\nCOMPRESS = base64 -w 0\nDECOMPRESS = base64 -d\n",
        None,
    )
    .unwrap();
    let compressors = ini.compressors().unwrap();
    let h = Harness::new(|raw| raw.compressor = Some("B64".into()));
    let h = h.other_machine_with(|s| s.compressors = compressors.clone());
    h.zfs.create_dataset("pool/fs").unwrap();
    h.snap("snap1", "hello");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let (body, meta, _) = h.store.object("z3-backup/pool/fs@snap1").unwrap();
    assert_eq!(meta.get("compressor").map(String::as_str), Some("b64"));
    assert!(
        body.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b))
    );

    let restored = h.other_machine_with(|_| {});
    let run = restored.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        restored.zfs.content("pool/fs").as_deref(),
        Some(&b"hello"[..])
    );

    // A host whose config lacks the section cannot guess the decoder.
    let bare = h.other_machine_with(|s| s.compressors = z3_codec::Compressors::builtin());
    let run = bare.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(run.status, ExitStatus::Error);
    assert!(
        run.err.contains("unknown compressor \"b64\""),
        "{}",
        run.err
    );
}

#[tokio::test]
async fn an_interrupt_during_backup_aborts_the_upload_and_stops_send() {
    let interrupt = z3_cli::interrupt::Interrupt::new();
    let h = Harness::new(|raw| raw.compressor = Some("zstd".into()))
        .with_interrupt_and_ttl(&interrupt, 900_000);
    h.snap("snap1", &"x".repeat(100_000));
    h.snap("snap2", "two");
    h.zfs.stall_next_send(1000);
    let run = {
        let backup = h.run(Command::Backup(backup()));
        tokio::pin!(backup);
        // Let the backup get stuck in the stalled send, then interrupt it.
        until_send_stalls(&h.zfs, backup.as_mut()).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        interrupt.trigger(z3_cli::interrupt::SIGINT);
        backup.await
    };
    assert_eq!(run.status, ExitStatus::Error);
    assert!(run.err.contains("cancelled"), "{}", run.err);
    assert!(
        h.store.objects().is_empty(),
        "{:?}",
        h.store.objects().keys()
    );
    assert_eq!(h.store.open_uploads(), 0);
    // The compressor's task owned the send stream; aborted tasks are dropped by the runtime
    // right after (in the binary, at the latest when the runtime shuts down).
    for _ in 0..100 {
        if h.zfs.stalled_sends() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.zfs.stalled_sends(), 0, "zfs send was not stopped");
    // The next snapshot was not started either.
    assert_eq!(
        h.zfs
            .calls()
            .iter()
            .filter(|c| c.starts_with("send"))
            .count(),
        1,
        "{:?}",
        h.zfs.calls()
    );
}

#[tokio::test]
async fn an_interrupt_before_restore_receives_nothing() {
    let interrupt = z3_cli::interrupt::Interrupt::new();
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let other = h
        .other_machine_with(|_| {})
        .with_interrupt_and_ttl(&interrupt, 900_000);
    interrupt.trigger(z3_cli::interrupt::SIGTERM);
    let run = other.run(Command::Restore(restore("snap1"))).await;
    assert_eq!(run.status, ExitStatus::Error);
    assert!(run.err.contains("SIGTERM"), "{}", run.err);
    assert!(!other.zfs.calls().iter().any(|c| c.starts_with("receive")));
}

const LOCK_KEY: &str = "z3-backup/.z3-locks/pool/fs";

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Drives `running` until its `zfs send` has stalled ([`FakeZfs::stall_next_send`]); fails the
/// test if the run ends first.
async fn until_send_stalls(
    zfs: &FakeZfs,
    mut running: std::pin::Pin<&mut impl Future<Output = Run>>,
) {
    while zfs.stalled_sends() == 0 {
        tokio::select! {
            run = &mut running => panic!("the run ended by itself: {}", run.err),
            () = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
        }
    }
}

impl Harness {
    /// Puts a lock record as another run would have written it.
    pub(crate) fn foreign_lock(&self, expires: u64) {
        let record = z3_core::LockRecord {
            owner: "someone-else".into(),
            host: "other-host".into(),
            pid: 7,
            acquired: now() - 60,
            expires,
            process: None,
        };
        self.store.insert(
            LOCK_KEY.to_owned(),
            record.to_text().into_bytes(),
            &PutOptions::default(),
        );
    }

    fn with_interrupt_and_ttl(
        mut self,
        interrupt: &z3_cli::interrupt::Interrupt,
        ttl_ms: u64,
    ) -> Self {
        self.engine = Engine::new(
            Arc::new(self.zfs.clone()),
            Arc::new(self.store.clone()),
            self.settings.clone(),
        )
        .with_interrupt(interrupt.clone())
        .with_lock_ttl(std::time::Duration::from_millis(ttl_ms));
        self
    }
}

#[tokio::test]
async fn a_held_lock_refuses_a_second_backup_naming_the_holder() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.foreign_lock(now() + 3600);
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Locked, "{}", run.err);
    assert!(run.err.contains("other-host (pid 7)"), "{}", run.err);
    assert!(
        run.err.contains(LOCK_KEY) && run.err.contains("--break-lock"),
        "{}",
        run.err
    );
    assert!(!h.zfs.calls().iter().any(|c| c.starts_with("send")));
    assert_eq!(h.store.objects().len(), 1, "only the foreign lock");

    // --break-lock takes it anyway, says so, and leaves no lock behind.
    let run = h
        .run(Command::Backup(BackupArgs {
            break_lock: true,
            ..backup()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(run.err.contains("breaking the lock"), "{}", run.err);
    assert!(h.store.object(LOCK_KEY).is_none());
    assert!(h.store.object("z3-backup/pool/fs@snap1").is_some());
}

#[tokio::test]
async fn a_stale_lock_is_taken_over_and_every_run_releases_its_own() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.foreign_lock(now() - 1);
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert!(
        run.err.contains("taking over the stale lock"),
        "{}",
        run.err
    );
    assert!(h.store.object(LOCK_KEY).is_none(), "released after success");

    h.snap("snap2", "two");
    h.zfs.fail_next_send(3);
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert!(h.store.object(LOCK_KEY).is_none(), "released after failure");
}

#[tokio::test]
async fn two_concurrent_backups_one_proceeds_and_the_other_is_refused() {
    let interrupt = z3_cli::interrupt::Interrupt::new();
    let first = Harness::new(|_| {}).with_interrupt_and_ttl(&interrupt, 60_000);
    first.snap("snap1", &"x".repeat(50_000));
    first.zfs.stall_next_send(100);
    // The second run is another host sharing the bucket and dataset.
    let second = first.other_machine_with(|_| {});
    second.zfs.create_dataset("pool/fs").unwrap();
    second.snap("snap1", "elsewhere");
    let running = first.run(Command::Backup(backup()));
    tokio::pin!(running);
    until_send_stalls(&first.zfs, running.as_mut()).await;
    let refused = second.run(Command::Backup(backup())).await;
    assert_eq!(refused.status, ExitStatus::Locked, "{}", refused.err);
    let holder = format!("pid {}", std::process::id());
    assert!(refused.err.contains(&holder), "{}", refused.err);
    interrupt.trigger(z3_cli::interrupt::SIGINT);
    let stopped = running.await;
    assert_eq!(stopped.status, ExitStatus::Error);
    assert!(
        first.store.object(LOCK_KEY).is_none(),
        "the interrupted run released its lock"
    );
    let run = second.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
}

#[tokio::test]
async fn a_run_that_loses_its_lock_stops_and_leaves_the_new_holder_alone() {
    let interrupt = z3_cli::interrupt::Interrupt::new();
    let h = Harness::new(|_| {}).with_interrupt_and_ttl(&interrupt, 300);
    h.snap("snap1", &"x".repeat(50_000));
    h.zfs.stall_next_send(100);
    let running = h.run(Command::Backup(backup()));
    tokio::pin!(running);
    until_send_stalls(&h.zfs, running.as_mut()).await;
    // Someone breaks the lock and takes it: the renewal (every 100 ms) notices.
    h.foreign_lock(now() + 3600);
    let run = tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("the run did not stop after losing its lock");
    assert_eq!(run.status, ExitStatus::Error, "{}", run.err);
    assert_eq!(h.store.open_uploads(), 0);
    assert!(h.store.object("z3-backup/pool/fs@snap1").is_none());
    let lock = h
        .store
        .object(LOCK_KEY)
        .expect("the new holder's lock stays");
    assert!(String::from_utf8_lossy(&lock.0).contains("someone-else"));
}

#[tokio::test]
async fn a_recreated_snapshot_is_not_built_on_and_objects_record_guids() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let (_, meta2, _) = h.store.object("z3-backup/pool/fs@snap2").unwrap();
    let (_, meta1, _) = h.store.object("z3-backup/pool/fs@snap1").unwrap();
    assert!(
        meta1.contains_key("guid") && !meta1.contains_key("parent-guid"),
        "{meta1:?}"
    );
    assert_eq!(meta2.get("parent-guid"), meta1.get("guid"));

    // The dataset is lost and rebuilt locally with snapshots of the same names.
    h.zfs.destroy_dataset("pool/fs").unwrap();
    h.zfs.create_dataset("pool/fs").unwrap();
    h.snap("snap1", "another one");
    h.snap("snap2", "another two");
    h.snap("snap3", "three");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err.contains("pool/fs@snap2") && run.err.contains("destroyed and re-created"),
        "{}",
        run.err
    );
    assert!(h.store.object("z3-backup/pool/fs@snap3").is_none());
    // status says which local snapshots are not the ones in the bucket.
    let run = h.run(Command::Status(StatusArgs::default())).await;
    assert!(run.out.contains("guid mismatch"), "{}", run.out);
}

/// Issue 12's rollback story on the fakes: the old chain's objects are never replaced, the
/// advice works as written, and both the old chain and the renamed snapshot restore.
#[tokio::test]
async fn rollback_and_recreate_never_replaces_the_old_chain() {
    let h = Harness::new(|_| {});
    for (name, content) in [("snap-d1", "one"), ("snap-d2", "two"), ("snap-d3", "three")] {
        h.snap(name, content);
    }
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let before = h.store.objects();
    h.zfs.rollback("pool/fs@snap-d1").unwrap();
    h.snap("snap-d2", "two, re-created");

    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err
            .contains("(`zfs rename pool/fs@snap-d2 pool/fs@snap-d2-2`) and back up again"),
        "{}",
        run.err
    );
    for overwrite_other_snapshot in [false, true] {
        let run = h
            .run(Command::Backup(z3_cli::args::BackupArgs {
                full: true,
                snapshot: Some("snap-d2".into()),
                overwrite_other_snapshot,
                ..backup()
            }))
            .await;
        assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
        assert!(
            run.err.contains("refusing to overwrite pool/fs@snap-d2"),
            "{}",
            run.err
        );
    }
    assert_eq!(
        h.store.objects(),
        before,
        "a refused backup changed the bucket"
    );
    assert_eq!(h.store.open_uploads(), 0);

    h.zfs
        .rename_snapshot("pool/fs@snap-d2", "snap-d2-2")
        .unwrap();
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let (_, meta, _) = h.store.object("z3-backup/pool/fs@snap-d2-2").unwrap();
    assert_eq!(
        meta.get("parent").map(String::as_str),
        Some("pool/fs@snap-d1")
    );

    let other = h.other_machine();
    let run = other.run(Command::Restore(restore("snap-d3"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(other.zfs.content("pool/fs").as_deref(), Some(&b"three"[..]));
    let third = h.other_machine();
    let run = third.run(Command::Restore(restore("snap-d2-2"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    assert_eq!(
        third.zfs.content("pool/fs").as_deref(),
        Some(&b"two, re-created"[..])
    );
}

/// A base replaced behind z3's back (e.g. by the original z3, which overwrites blindly) is
/// found from the guids before anything is downloaded or received.
#[tokio::test]
async fn restore_refuses_a_replaced_base_before_the_first_byte() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    h.snap("snap3", "three");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let key = "z3-backup/pool/fs@snap2";
    let (bytes, mut metadata, _) = h.store.object(key).unwrap();
    metadata.insert("guid".into(), "4242".into());
    h.store.insert(
        key,
        bytes,
        &PutOptions {
            metadata,
            ..PutOptions::default()
        },
    );
    let status = h.run(Command::Status(StatusArgs::default())).await;
    assert_eq!(status.status, ExitStatus::Integrity, "{}", status.err);
    assert!(
        status
            .out
            .lines()
            .any(|l| l.starts_with("snap3 ") && l.contains("parent replaced")),
        "{}",
        status.out
    );

    let other = h.other_machine();
    other.store.reset_calls();
    let run = other.run(Command::Restore(restore("snap3"))).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    assert!(
        run.err.contains(
            "reason: 'parent replaced': pool/fs@snap3 was made on pool/fs@snap2 with guid"
        ),
        "{}",
        run.err
    );
    assert!(run.err.contains("holds guid 4242"), "{}", run.err);
    assert_eq!(other.store.calls(z3_s3::Op::GetRange), 0);
    assert!(!other.zfs.calls().iter().any(|c| c.starts_with("receive")));
}

/// The same machine and bucket through a `FaultyStore`, with quick retries.
fn faulty(h: &Harness) -> (Harness, z3_s3::FaultyStore<MemoryStore>) {
    let faulty = z3_s3::FaultyStore::new(h.store.clone());
    let quick = h.with_settings_of(|s| {
        s.transfer.retry.initial_backoff = std::time::Duration::from_millis(1);
        s.transfer.retry.max_backoff = std::time::Duration::from_millis(5);
    });
    (quick.with_store(Arc::new(faulty.clone())), faulty)
}

#[tokio::test]
async fn one_throttled_or_reset_read_among_many_fails_no_command() {
    use z3_s3::{ErrorKind, Op};
    let h = Harness::new(|_| {});
    for i in 1..=3 {
        h.snap(&format!("snap{i}"), &i.to_string());
    }
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let (fh, faults) = faulty(&h);
    // Each command below meets a 503 on its first LIST, on the LIST of the seals, and a 503
    // and a reset on the HEADs of two of the objects. None of them may fail.
    let plan = || {
        faults.fail(Op::List, 1, ErrorKind::Throttled);
        faults.fail_key(
            "z3-backup/.z3-seals/",
            Some(Op::List),
            1,
            ErrorKind::Throttled,
        );
        faults.fail_key(
            "z3-backup/pool/fs@snap2",
            Some(Op::Head),
            1,
            ErrorKind::Throttled,
        );
        faults.fail_key(
            "z3-backup/pool/fs@snap3",
            Some(Op::Head),
            1,
            ErrorKind::Transient,
        );
        faults.fail_key(
            "z3-backup/.z3-seals/pool/fs@snap3",
            Some(Op::Head),
            1,
            ErrorKind::Unreachable,
        );
    };

    plan();
    let run = fh.run(Command::Status(StatusArgs::default())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    assert!(run.out.contains("snap3"), "{}", run.out);

    plan();
    let run = fh
        .run(Command::Verify(z3_cli::args::VerifyArgs {
            all: true,
            ..z3_cli::args::VerifyArgs::default()
        }))
        .await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);

    h.snap("snap4", "4");
    plan();
    let run = fh.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    assert!(h.store.object("z3-backup/pool/fs@snap4").is_some());

    h.zfs.destroy_dataset("pool/fs").unwrap();
    plan();
    let run = fh.run(Command::Restore(restore("snap4"))).await;
    assert_eq!(run.status, ExitStatus::Success, "{}{}", run.out, run.err);
    assert!(faults.calls(Op::Head) > 8, "the HEADs were made");
}

#[tokio::test]
async fn a_throttled_read_of_a_held_lock_still_names_the_holder() {
    // One 503 on the HEAD of another run's lock: retried, so the second backup is refused
    // naming the holder, not told the lock "cannot be read" and to break it.
    use z3_s3::{ErrorKind, Op};
    let h = Harness::new(|_| {});
    h.snap("snap1", "one");
    h.foreign_lock(now() + 3600);
    let (fh, faults) = faulty(&h);
    faults.fail_key(LOCK_KEY, Some(Op::Head), 1, ErrorKind::Throttled);
    let run = fh.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Locked, "{}", run.err);
    assert!(run.err.contains("other-host (pid 7)"), "{}", run.err);
    assert!(!run.err.contains("cannot be read"), "{}", run.err);
    assert_eq!(faults.calls(Op::Head), 2);
}

/// `z3 status --all`: a row per dataset under the prefix, whatever the configured dataset and
/// snapshot prefix; a dataset with a broken chain makes it exit 3; JSON carries the same.
#[tokio::test]
async fn status_all_summarises_every_dataset_in_the_bucket() {
    let h = Harness::new(|_| {});
    h.store.set_time(1_000_000);
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    // Another dataset, written by another host: a full, then an incremental whose parent is gone.
    h.store.set_time(1_000_500);
    h.put("pool/other@a", &[("isfull", "true")]);
    h.put("pool/other@c", &[("parent", "pool/other@b")]);
    // Seals and the lock are not datasets.
    assert!(h.store.objects().keys().any(|k| k.contains(".z3-seals/")));
    h.store.set_time(1_000_000 + 3 * 86_400);

    let all = StatusArgs {
        all: true,
        ..StatusArgs::default()
    };
    let run = h.run(Command::Status(all)).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    let lines: Vec<&str> = run.out.lines().collect();
    assert_eq!(lines[0], "backup status of every dataset on bkt/z3-backup/");
    assert!(lines[1].starts_with("DATASET "), "{}", run.out);
    assert_eq!(lines.len(), 4, "{}", run.out);
    // Every cell but AGE (measured from the system clock).
    let cells = |line: &str| {
        let mut cells: Vec<String> = line.split('|').map(|c| c.trim().to_owned()).collect();
        cells.remove(2);
        cells
    };
    let fs = cells(lines[2]);
    assert_eq!(
        &fs[..5],
        ["pool/fs", "snap2", "2", "ok", "2"],
        "{}",
        run.out
    );
    let other = cells(lines[3]);
    assert_eq!(
        &other[..5],
        ["pool/other", "c", "-", "1 broken", "2"],
        "{}",
        run.out
    );

    let json = StatusArgs {
        all: true,
        json: true,
        ..StatusArgs::default()
    };
    let run = h.run(Command::Status(json)).await;
    assert_eq!(run.status, ExitStatus::Integrity, "{}", run.err);
    let doc: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    assert_eq!(doc["healthy"], false);
    assert_eq!(doc["datasets"][0]["dataset"], "pool/fs");
    assert_eq!(doc["datasets"][0]["depth"], 2);
    assert_eq!(doc["datasets"][0]["newest_at"], 1_000_000);
    assert_eq!(doc["datasets"][1]["broken"], 1);
}

/// `z3 backup --all`: every `[fs:…]` dataset in turn, each with its own section; a failing one
/// (no snapshots, an unusable compressor, a broken chain) does not stop the others, and the exit
/// code is the most serious (3 > 4 > 2 > 1 > 0).
#[tokio::test]
#[allow(clippy::too_many_lines)] // one story: a first run, then a broken chain, then refusals
async fn backup_all_backs_up_each_configured_dataset_and_reports_the_worst() {
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("z3.conf");
    let write_conf = |sections: &str| std::fs::write(&conf, sections).unwrap();
    write_conf(
        "[fs:pool/a]\nSNAPSHOT_PREFIX=snap\n\n[fs:pool/b]\n\n[fs:pool/c]\nCOMPRESSOR=no-such-thing\n\n[fs:pool/d]\nCOMPRESSOR=none\n",
    );
    let env: Vec<(String, String)> = [
        ("BUCKET", "bkt"),
        ("S3_PREFIX", "z3-backup/"),
        ("SNAPSHOT_PREFIX", "snap"),
        ("COMPRESSOR", "none"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let zfs = FakeZfs::new();
    for ds in ["pool/a", "pool/b", "pool/c", "pool/d"] {
        zfs.create_dataset(ds).unwrap();
    }
    for ds in ["pool/a", "pool/c", "pool/d"] {
        zfs.write(ds, format!("data of {ds}")).unwrap();
        zfs.snapshot(&format!("{ds}@snap1")).unwrap();
    }
    let store = MemoryStore::new("bkt");
    let run = |zfs: FakeZfs,
               store: MemoryStore,
               conf: std::path::PathBuf,
               env: Vec<(String, String)>| async move {
        let cli = z3_cli::args::Cli::try_parse_from([
            "z3",
            "--config",
            conf.to_str().unwrap(),
            "backup",
            "--all",
        ])
        .unwrap();
        let file = z3_cli::setup::config_file(cli.config.as_deref()).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = z3_cli::run_all(
            &cli,
            &file,
            &env,
            Arc::new(zfs),
            Arc::new(store),
            &mut Console {
                out: &mut out,
                err: &mut err,
            },
        )
        .await
        .unwrap();
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };

    let (status, out, err) = run(zfs.clone(), store.clone(), conf.clone(), env.clone()).await;
    assert_eq!(status, ExitStatus::Usage, "{out}{err}");
    let summary: Vec<&str> = out.lines().rev().take(4).collect();
    assert_eq!(
        summary,
        [
            "pool/d: ok (exit 0)",
            "pool/c: usage or configuration error (exit 2)",
            "pool/b: failed (exit 1)",
            "pool/a: ok (exit 0)",
        ],
        "{out}"
    );
    assert!(
        err.contains("z3: error: pool/c: invalid COMPRESSOR"),
        "{err}"
    );
    // The datasets before and after the failures were backed up.
    let keys = store.objects();
    assert!(keys.contains_key("z3-backup/pool/a@snap1"));
    assert!(keys.contains_key("z3-backup/pool/d@snap1"));
    assert!(!keys.keys().any(|k| k.contains("pool/c@")));

    // A broken chain in one dataset outranks the rest: exit 3, and the others still run.
    // pool/a's backed-up base now names a parent that is gone.
    zfs.write("pool/a", "more".to_owned()).unwrap();
    zfs.snapshot("pool/a@snap2").unwrap();
    store.insert(
        "z3-backup/pool/a@snap1",
        b"x".to_vec(),
        &PutOptions {
            metadata: [("parent".to_owned(), "pool/a@gone".to_owned())].into(),
            ..PutOptions::default()
        },
    );
    zfs.write("pool/d", "more".to_owned()).unwrap();
    zfs.snapshot("pool/d@snap2").unwrap();
    write_conf("[fs:pool/a]\n[fs:pool/d]\n");
    let (status, out, _) = run(zfs.clone(), store.clone(), conf.clone(), env.clone()).await;
    assert!(out.ends_with("pool/d: ok (exit 0)\n"), "{out}");
    assert!(store.objects().contains_key("z3-backup/pool/d@snap2"));
    assert_eq!(status, ExitStatus::Integrity, "{out}");

    // --dataset with --all is refused; so is a config file without [fs:…] sections.
    let cli = z3_cli::args::Cli::try_parse_from(["z3", "--dataset", "pool/a", "backup", "--all"])
        .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let refused = z3_cli::run_all(
        &cli,
        &z3_cli::config::IniFile::default(),
        &env,
        Arc::new(zfs.clone()),
        Arc::new(store.clone()),
        &mut Console {
            out: &mut out,
            err: &mut err,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(classify(&refused), ExitStatus::Usage);
    assert!(refused.to_string().contains("--dataset"), "{refused}");
}

/// Seals (read before every restore) stay in STANDARD whatever class backups use (the lock's
/// record too: z3-engine's lock tests).
#[tokio::test]
async fn seals_are_stored_in_standard_whatever_backups_use() {
    let h = Harness::new(|raw| raw.s3_storage_class = Some("DEEP_ARCHIVE".into()));
    h.snap("snap1", "one");
    let run = h.run(Command::Backup(backup())).await;
    assert_eq!(run.status, ExitStatus::Success, "{}", run.err);
    let objects = h.store.objects();
    for key in objects.keys() {
        let (_, _, class) = h.store.object(key).unwrap();
        let expected = if key.contains(".z3-seals/") {
            "STANDARD"
        } else {
            "DEEP_ARCHIVE"
        };
        assert_eq!(class.as_deref(), Some(expected), "{key}");
    }
    assert!(objects.keys().any(|k| k.contains(".z3-seals/")));
}

/// `backup --all --recursive`: every dataset below a configured one is backed up as its own
/// chain, with a summary line each.
#[tokio::test]
async fn backup_all_recursive_includes_the_datasets_below() {
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("z3.conf");
    std::fs::write(&conf, "[fs:pool/a]\n").unwrap();
    let env: Vec<(String, String)> = [
        ("BUCKET", "bkt"),
        ("S3_PREFIX", "z3-backup/"),
        ("SNAPSHOT_PREFIX", "snap"),
        ("COMPRESSOR", "none"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let zfs = FakeZfs::new();
    for ds in ["pool/a", "pool/a/b", "pool/a/b/c", "pool/other"] {
        zfs.create_dataset(ds).unwrap();
        zfs.write(ds, format!("data of {ds}")).unwrap();
        zfs.snapshot(&format!("{ds}@snap1")).unwrap();
    }
    let store = MemoryStore::new("bkt");
    let cli = z3_cli::args::Cli::try_parse_from([
        "z3",
        "--config",
        conf.to_str().unwrap(),
        "backup",
        "--all",
        "--recursive",
    ])
    .unwrap();
    let file = z3_cli::setup::config_file(cli.config.as_deref()).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = z3_cli::run_all(
        &cli,
        &file,
        &env,
        Arc::new(zfs.clone()),
        Arc::new(store.clone()),
        &mut Console {
            out: &mut out,
            err: &mut err,
        },
    )
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(status, ExitStatus::Success, "{out}");
    for ds in ["pool/a", "pool/a/b", "pool/a/b/c"] {
        assert!(
            store
                .objects()
                .contains_key(&format!("z3-backup/{ds}@snap1")),
            "{ds}"
        );
        assert!(out.contains(&format!("{ds}: ok (exit 0)")), "{out}");
    }
    assert!(!store.objects().keys().any(|k| k.contains("pool/other")));
    // --recursive needs --all.
    assert!(z3_cli::args::Cli::try_parse_from(["z3", "backup", "--recursive"]).is_err());
}

/// `status --check`: no backup and a broken chain are CRITICAL; the newest upload's age makes
/// OK, WARNING (past 26h) or CRITICAL (past 50h); perfdata carries age, objects and depth.
#[tokio::test]
async fn status_check_judges_fresh_stale_and_broken_chains() {
    use z3_core::check::State;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed();
    let h = Harness::new(|_| {});
    let none = h.check().await;
    assert_eq!(none.state, State::Critical, "{}", none.line);
    assert!(none.line.contains("no backup"), "{}", none.line);

    h.store.set_time(now - 60 * 3600);
    h.snap("snap1", "one");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let stale = h.check().await;
    assert_eq!(stale.state, State::Critical, "{}", stale.line);

    h.store.set_time(now - 30 * 3600);
    h.snap("snap2", "two");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    assert_eq!(h.check().await.state, State::Warning);

    h.store.set_time(now - 3600);
    h.snap("snap3", "three");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let fresh = h.check().await;
    assert_eq!(fresh.state, State::Ok, "{}", fresh.line);
    assert!(
        fresh.line.starts_with("Z3 OK - pool/fs: newest backup pool/fs@snap3 1h 0m ago, 3 objects | age=3600s;93600;180000;0 objects=3;;;0 broken=0;;;0 depth=3;;;0"),
        "{}",
        fresh.line
    );

    // An incremental whose parent is gone: CRITICAL however fresh.
    h.put("pool/fs@snap9", &[("parent", "pool/fs@gone")]);
    let broken = h.check().await;
    assert_eq!(broken.state, State::Critical, "{}", broken.line);
    assert!(
        broken.line.contains("1 broken or unsealed"),
        "{}",
        broken.line
    );
}

/// `backup --metrics-dir`: a Prometheus text file per dataset after every run, parsed as such;
/// a failed run records its exit code and keeps the last success time.
#[tokio::test]
async fn backup_writes_prometheus_metrics_after_success_and_failure() {
    let h = Harness::new(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let args = || BackupArgs {
        metrics_dir: Some(dir.path().to_owned()),
        ..backup()
    };
    h.snap("snap1", "one");
    h.snap("snap2", "two");
    assert_eq!(
        h.run(Command::Backup(args())).await.status,
        ExitStatus::Success
    );
    let path = dir.path().join("z3_pool_fs.prom");
    let parse = || {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        scrape
            .samples
            .into_iter()
            .map(|s| {
                assert_eq!(s.labels.get("dataset"), Some("pool/fs"));
                let prometheus_parse::Value::Gauge(v) = s.value else {
                    panic!("{}: not a gauge", s.metric)
                };
                (s.metric, v)
            })
            .collect::<BTreeMap<String, f64>>()
    };
    let ok = parse();
    assert!((ok["z3_backup_last_exit_code"]).abs() < f64::EPSILON);
    assert!((ok["z3_backup_objects"] - 2.0).abs() < f64::EPSILON);
    assert!((ok["z3_backup_chain_depth"] - 2.0).abs() < f64::EPSILON);
    assert!(ok["z3_backup_last_read_bytes"] > 0.0);
    let success = ok["z3_backup_last_success_timestamp_seconds"];
    assert!(success >= ok["z3_backup_last_attempt_timestamp_seconds"]);

    // A run that fails (no such snapshot) says so, and keeps the last success.
    let failing = BackupArgs {
        snapshot: Some("nope".into()),
        ..args()
    };
    assert_eq!(
        h.run(Command::Backup(failing)).await.status,
        ExitStatus::Error
    );
    let failed = parse();
    assert!((failed["z3_backup_last_exit_code"] - 1.0).abs() < f64::EPSILON);
    assert!((failed["z3_backup_last_success_timestamp_seconds"] - success).abs() < f64::EPSILON);
    assert!((failed["z3_backup_last_read_bytes"]).abs() < f64::EPSILON);
}

/// Issue 16, point 4: `status`, `status --all` and `status --check` read only new or changed
/// objects through the status cache; `--no-cache` reads every one and leaves the cache alone.
#[tokio::test]
async fn status_uses_the_cache_unless_no_cache() {
    let h = Harness::new(|_| {});
    h.snap("snap1", "monday");
    h.snap("snap2", "tuesday");
    assert_eq!(
        h.run(Command::Backup(backup())).await.status,
        ExitStatus::Success
    );
    let cache = Arc::new(z3_engine::MemoryMetaCache::new());
    let h = Harness {
        engine: (h.engine.clone()).with_meta_cache(Some(cache.clone())),
        ..h
    };
    let heads = |h: &Harness| h.store.calls(z3_s3::Op::Head);
    let status = |all, no_cache| {
        Command::Status(StatusArgs {
            all,
            no_cache,
            ..StatusArgs::default()
        })
    };
    for all in [false, true] {
        let before = heads(&h);
        let cold = h.run(status(all, false)).await;
        assert_eq!(cold.status, ExitStatus::Success, "{}", cold.err);
        assert_eq!(heads(&h) - before, 2, "cold, --all {all}");
        let before = heads(&h);
        let warm = h.run(status(all, false)).await;
        assert_eq!(heads(&h) - before, 0, "warm, --all {all}");
        assert_eq!(warm.out, cold.out);
        let calls = cache.calls();
        let before = heads(&h);
        let uncached = h.run(status(all, true)).await;
        assert_eq!(heads(&h) - before, 2, "--no-cache, --all {all}");
        assert_eq!(uncached.out, cold.out);
        assert_eq!(cache.calls(), calls, "--no-cache leaves the cache alone");
    }
    let before = heads(&h);
    assert_eq!(h.check().await.state, z3_core::check::State::Ok);
    assert_eq!(heads(&h) - before, 0, "--check is warm too");
}

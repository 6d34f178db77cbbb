//! A whole backup/restore cycle through the real engine, offline: `FakeZfs` for the pool and
//! `MemoryStore` for the bucket.
//!
//! `cargo run -p z3-examples --example backup_restore`

use std::sync::Arc;

use anyhow::Result;
use z3_cli::args::{BackupArgs, Command, RestoreArgs, StatusArgs};
use z3_cli::config::{RawConfig, Settings};
use z3_cli::engine::{Console, Engine};
use z3_s3::MemoryStore;
use z3_zfs::fake::FakeZfs;

#[tokio::main]
async fn main() -> Result<()> {
    let zfs = FakeZfs::new();
    zfs.create_dataset("tank/data")?;
    let store = MemoryStore::new("backups");
    let settings = Settings::resolve(RawConfig {
        bucket: Some("backups".into()),
        filesystem: Some("tank/data".into()),
        snapshot_prefix: Some("daily-".into()),
        compressor: Some("none".into()),
        ..RawConfig::default()
    })?;
    let engine = Engine::new(Arc::new(zfs.clone()), Arc::new(store.clone()), settings);
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut console = Console {
        out: &mut stdout,
        err: &mut stderr,
    };

    for (day, content) in [
        ("daily-1", "monday"),
        ("daily-2", "tuesday"),
        ("daily-3", "wednesday"),
    ] {
        zfs.write("tank/data", content)?;
        zfs.snapshot(&format!("tank/data@{day}"))?;
    }
    println!("# z3 backup (first run: a full, then incrementals)");
    let backup = BackupArgs::default();
    z3_cli::execute(&engine, &Command::Backup(backup), &mut console).await?;

    println!("\n# z3 status");
    z3_cli::execute(
        &engine,
        &Command::Status(StatusArgs::default()),
        &mut console,
    )
    .await?;

    println!("\n# the dataset is lost; z3 restore daily-3");
    zfs.destroy_dataset("tank/data")?;
    let restore = RestoreArgs {
        snapshot: "daily-3".into(),
        ..RestoreArgs::default()
    };
    z3_cli::execute(&engine, &Command::Restore(restore), &mut console).await?;
    let content = zfs.content("tank/data").unwrap_or_default();
    println!(
        "\nrestored content: {:?}; objects in the bucket: {:?}",
        String::from_utf8_lossy(&content),
        store.objects().keys().collect::<Vec<_>>()
    );
    assert_eq!(&content[..], b"wednesday");
    Ok(())
}

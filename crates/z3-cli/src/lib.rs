//! The `z3` command line as a library: flags, configuration, the engine and exit codes.
//!
//! `main.rs` only parses flags, builds the real [`z3_zfs::ZfsCli`] and [`z3_s3::AwsStore`] and calls [`run`].
//! Tests call [`engine::Engine`] with `z3_zfs::fake::FakeZfs` and [`z3_s3::MemoryStore`] instead, so
//! every decision the binary makes is exercised without a pool or a network.
//!
//! This is the only crate that reads environment variables, configuration files and terminals, and
//! the only one that knows about exit codes (see [`exit::ExitStatus`]).

pub mod args;
pub mod cleanup;
pub mod config;
pub mod console;
pub mod engine;
pub mod exit;
pub mod interrupt;
pub mod progress;
pub mod setup;
pub mod stdio;
pub mod sync;
pub mod transfer;

/// The backup lock, from the engine (kept here for the tests and tools that name it so).
pub use z3_engine::lock;

use std::sync::Arc;

use anyhow::{Result, bail};
use z3_engine::UsageError;
use z3_s3::ObjectStore;
use z3_zfs::{Zfs, ZfsCli};

use crate::args::{Cli, Command};
use crate::config::{IniFile, Settings, layer};
use crate::engine::{Console, Engine};
use crate::exit::ExitStatus;

/// Reads the configuration for `cli` from the config file and `env`.
///
/// # Errors
/// [`config::ConfigError`] for unreadable files and missing or invalid keys.
pub fn load_settings(
    cli: &Cli,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings> {
    let file = setup::config_file(cli.config.as_deref())?;
    settings_for(&file, cli, env, None)
}

/// The settings of `dataset` (or the configured one), from `file`, `env` and the flags.
fn settings_for(
    file: &IniFile,
    cli: &Cli,
    env: impl IntoIterator<Item = (String, String)>,
    dataset: Option<&str>,
) -> Result<Settings> {
    let mut flags = cli.overrides();
    if let Some(dataset) = dataset {
        flags.filesystem = Some(dataset.to_owned());
    }
    let mut settings = Settings::resolve(layer(file, env, &flags)?)?;
    settings.compressors = file.compressors()?;
    Ok(settings)
}

/// Refuses snapshot names ZFS would refuse (quotes, `%`, non-ASCII, …) before connecting to
/// anything, naming the value.
///
/// # Errors
/// [`z3_core::NameError`] (a usage error).
pub fn check_names(command: &Command) -> Result<()> {
    let snapshot = match command {
        Command::Backup(args) => args.snapshot.as_deref(),
        Command::Restore(args) => Some(args.snapshot.as_str()),
        Command::Verify(args) => args.snapshot.as_deref(),
        Command::Status(_) | Command::Prune(_) => None,
    };
    if let Some(name) = snapshot {
        z3_core::SnapshotName::new(name)?;
    }
    if let Command::Restore(args) = command
        && let Some(dataset) = &args.target_dataset
    {
        z3_core::DatasetName::new(dataset)?;
    }
    Ok(())
}

/// Runs one `z3` invocation against the real zfs and S3.
///
/// # Errors
/// Anything that makes the command fail; [`exit::classify`] picks the exit status.
pub async fn run(cli: Cli, console: &mut Console<'_>) -> Result<ExitStatus> {
    let settings = load_settings(&cli, std::env::vars())?;
    let env: Vec<_> = std::env::vars().collect();
    let all = matches!(&cli.command, Command::Backup(a) if a.all)
        || matches!(&cli.command, Command::Prune(a) if a.all);
    // Before any connection, and once: a typo in COMPRESSOR or an unusable age recipient is a
    // configuration error.
    let encoding = match cli.command {
        Command::Backup(_) if !all => Some(engine::encoding(&settings)?),
        _ => None,
    };
    check_names(&cli.command)?;
    let clock = clock_from(&env)?;
    let zfs = zfs_of(&settings);
    let store = setup::connect(&settings).await?;
    store.check_bucket().await?;
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    if all {
        let file = setup::config_file(cli.config.as_deref())?;
        return run_all(&cli, &file, &env, zfs, store, console).await;
    }
    let progress = crate::progress::ProgressMode::from_flags(cli.progress, false);
    let cache = setup::meta_cache(&settings);
    let mut engine = Engine::new(zfs, store, settings)
        .with_meta_cache(cache)
        .with_progress(progress)
        .with_interrupt(interrupt::global().clone());
    if let Some(encoding) = encoding {
        engine = engine.with_encoding(encoding);
    }
    if let Some(clock) = clock {
        engine = engine.with_clock(clock);
    }
    execute(&engine, &cli.command, console).await
}

/// The `zfs` program the settings name.
fn zfs_of(settings: &Settings) -> Arc<dyn Zfs> {
    Arc::new(match &settings.zfs_command {
        Some(program) => ZfsCli::with_program(program.clone()),
        None => ZfsCli::new(),
    })
}

/// `z3 status --check`: the monitoring-plugin line on stdout (any error is the UNKNOWN line)
/// and its state, which is the exit code.
///
/// # Errors
/// Only a failed write to stdout.
pub async fn check(cli: &Cli, console: &mut Console<'_>) -> std::io::Result<z3_core::check::State> {
    let check =
        (check_status(cli).await).unwrap_or_else(|e| z3_core::check::unknown(&format!("{e:#}")));
    writeln!(console.out, "{}", check.line)?;
    Ok(check.state)
}

async fn check_status(cli: &Cli) -> Result<z3_core::check::Check> {
    let Command::Status(args) = &cli.command else {
        bail!("--check is a flag of status");
    };
    let settings = load_settings(cli, std::env::vars())?;
    let store = setup::connect(&settings).await?;
    store.check_bucket().await?;
    let cache = setup::meta_cache(&settings);
    Engine::new(zfs_of(&settings), Arc::new(store), settings)
        .with_meta_cache(cache)
        .check(args)
        .await
}

/// `z3 backup --all` and `z3 prune --all`: runs the command for each dataset with an
/// `[fs:…]` section of `file` in turn (each with its own settings and lock), goes on after one
/// fails, then prints a summary line per dataset; the status is the most serious of theirs
/// ([`ExitStatus::worst`]). A signal stops it at once (the interrupted dataset's error is
/// returned).
///
/// # Errors
/// `--dataset` given too, no `[fs:…]` section, or an interrupt.
pub async fn run_all(
    cli: &Cli,
    file: &IniFile,
    env: &[(String, String)],
    zfs: Arc<dyn Zfs>,
    store: Arc<dyn ObjectStore>,
    console: &mut Console<'_>,
) -> Result<ExitStatus> {
    if cli.dataset.is_some() {
        bail!(UsageError(
            "--all runs for the datasets of the config file's [fs:<dataset>] sections; drop --dataset".into()
        ));
    }
    let mut datasets = file.datasets();
    if matches!(&cli.command, Command::Backup(a) if a.recursive)
        || matches!(&cli.command, Command::Prune(a) if a.recursive)
    {
        datasets = z3_engine::fleet::with_descendants(zfs.as_ref(), &datasets).await;
    }
    if datasets.is_empty() {
        bail!(UsageError(
            "--all: the config file has no [fs:<dataset>] section".into()
        ));
    }
    let clock = clock_from(env)?;
    let mut results = Vec::with_capacity(datasets.len());
    for dataset in datasets {
        let one = async {
            let settings = settings_for(file, cli, env.iter().cloned(), Some(&dataset))?;
            let encoding = match cli.command {
                Command::Backup(_) => Some(engine::encoding(&settings)?),
                _ => None,
            };
            let mut engine = Engine::new(Arc::clone(&zfs), Arc::clone(&store), settings)
                .with_progress(crate::progress::ProgressMode::from_flags(
                    cli.progress,
                    false,
                ))
                .with_interrupt(interrupt::global().clone());
            if let Some(encoding) = encoding {
                engine = engine.with_encoding(encoding);
            }
            if let Some(clock) = &clock {
                engine = engine.with_clock(Arc::clone(clock));
            }
            execute(&engine, &cli.command, console).await
        };
        let status = match one.await {
            Ok(status) => status,
            Err(err) if interrupt::global().signal().is_some() => return Err(err),
            Err(err) => {
                writeln!(console.err, "z3: error: {dataset}: {err:#}")?;
                exit::classify(&err)
            }
        };
        results.push((dataset, status));
    }
    let worst = results
        .iter()
        .fold(ExitStatus::Success, |w, r| w.worst(r.1));
    let json = matches!(&cli.command, Command::Backup(a) if a.json)
        || matches!(&cli.command, Command::Prune(a) if a.json);
    if json {
        // After each dataset's own lines, one line for the whole run (docs/json.md).
        let datasets: Vec<_> = (results.iter())
            .map(|(d, s)| serde_json::json!({"dataset": d, "exit_code": *s as u8}))
            .collect();
        let all = serde_json::json!({"event": "all_finished", "exit_code": worst as u8, "datasets": datasets});
        z3_engine::json::write_line(&mut *console.out, &all)?;
    }
    for (dataset, status) in results.iter().filter(|_| !json) {
        let code = *status as u8;
        writeln!(
            console.out,
            "{dataset}: {} (exit {code})",
            status.describe()
        )?;
    }
    Ok(worst)
}

/// `Z3_NOW` (RFC 3339 or Unix seconds): decide as if it were that time (a fixed clock).
///
/// # Errors
/// An unparsable value (a usage error naming it).
pub fn clock_from(env: &[(String, String)]) -> Result<Option<Arc<dyn z3_engine::Clock>>> {
    let Some((_, value)) = env.iter().find(|(k, _)| k == "Z3_NOW") else {
        return Ok(None);
    };
    let clock = z3_engine::ManualClock::parse(value)
        .map_err(|e| UsageError(format!("invalid Z3_NOW '{value}': {e}")))?;
    Ok(Some(Arc::new(clock)))
}

/// Runs a subcommand on an engine.
///
/// # Errors
/// The command's failure.
pub async fn execute(
    engine: &Engine,
    command: &Command,
    console: &mut Console<'_>,
) -> Result<ExitStatus> {
    let outcome = match command {
        Command::Status(args) => engine.status(args, console).await?,
        Command::Backup(args) => engine.backup(args, console).await?,
        Command::Restore(args) => engine.restore(args, console).await?,
        Command::Verify(args) => engine.verify(args, console).await?,
        Command::Prune(args) => engine.prune(args, console).await?,
    };
    Ok(outcome.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z3_now_fixes_the_clock_in_rfc3339_or_unix_seconds() {
        let env = |v: &str| vec![("Z3_NOW".to_owned(), v.to_owned())];
        let secs = |c: Arc<dyn z3_engine::Clock>| c.unix_secs();
        assert!(clock_from(&[]).unwrap().is_none());
        assert_eq!(
            secs(clock_from(&env("1800000000")).unwrap().unwrap()),
            1_800_000_000
        );
        assert_eq!(
            secs(clock_from(&env("2027-01-01T00:00:00Z")).unwrap().unwrap()),
            1_798_761_600
        );
        let err = clock_from(&env("tomorrow")).err().unwrap();
        assert_eq!(exit::classify(&err), ExitStatus::Usage);
        assert!(err.to_string().contains("Z3_NOW 'tomorrow'"), "{err}");
    }
}

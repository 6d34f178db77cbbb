//! `z3_mp_cleanup`: aborts multipart uploads left open (the original's `python -m z3.s3_mp_cleanup`,
//! which was never installed as a command; docs/compatibility.md, "Stale-upload cleanup").
//!
//! z3 aborts its own failed uploads, but some cannot be aborted: a process killed with SIGKILL, a
//! second Ctrl-C, a server unreachable until z3 gave up. Their parts stay stored and billed until
//! aborted. This command lists the open uploads, marks those at least `--max-age` days old with
//! `X` and aborts them (unless `--dry-run`). Younger uploads may belong to a backup still running
//! and are left alone; so are uploads whose start time the server does not report, and uploads
//! whose key is covered by a live backup lock (`<prefix>.z3-locks/<dataset>`, marked `L`): a
//! backup of a large dataset can run for days, and aborting its upload would lose that night's
//! backup. A lock is live unless its record is stale by its own rule (`z3_core::LockRecord::is_stale`);
//! a lock that exists but cannot be read or parsed counts as live.

// The doc comments of the flag structs are terminal help text, not rustdoc.
#![allow(clippy::doc_markdown)]

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::Parser;
use z3_engine::Event;
use z3_engine::cleanup::UploadAction;

use crate::console::{Render, Rendered};
use z3_s3::ObjectStore;

const AFTER_HELP: &str = "\
BUCKET, S3 credentials and the endpoint come from the environment or the [main] section of \
/etc/z3_backup/z3.conf, as for z3 (unlike the original, the endpoint is honoured).

Output: a table 'A | key | initiated' (A is X for the uploads aborted, or to abort with --dry-run; \
L for old uploads kept because a live z3 backup lock <prefix>.z3-locks/<dataset> covers their key; \
J for uploads an interrupted z3 backup journaled in <prefix>.z3-journal/ for resuming, kept until \
they are 7 days old; each with a line saying why), then a summary line. A lock counts as live until \
it expires; one that cannot be read counts as live too.

Exit codes: 0 success, 1 error (some upload could not be aborted, S3 failures), 2 usage error.";

/// Abort unfinished multipart uploads older than a number of days.
#[derive(Debug, Parser)]
#[command(name = "z3_mp_cleanup", version = z3_engine::VERSION, after_help = AFTER_HELP, max_term_width = 100)]
pub struct CleanupArgs {
    /// Abort uploads started at least this many days ago (fractions allowed); uploads of a
    /// backup that still holds its lock are kept whatever their age
    #[arg(long, value_name = "DAYS", default_value = "7", value_parser = parse_days)]
    pub max_age: f64,

    /// Only list; abort nothing
    #[arg(long, visible_alias = "dry")]
    pub dry_run: bool,

    /// Only uploads whose key starts with this (default: the whole bucket)
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub prefix: String,

    /// Config file (default /etc/z3_backup/z3.conf; also Z3_CONFIG)
    #[arg(long, value_name = "PATH", env = "Z3_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,

    /// Print JSON lines instead of the table: one per upload, then a "finished" line with the
    /// exit code and the counts (schema 1, see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// The largest `--max-age`: 100 years (a larger one would overflow the age computation).
pub const MAX_AGE_DAYS: f64 = 36_500.0;

fn parse_days(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(days) if days.is_finite() && (0.0..=MAX_AGE_DAYS).contains(&days) => Ok(days),
        _ => Err(format!(
            "'{text}' is not a number of days from 0 to {MAX_AGE_DAYS}"
        )),
    }
}

pub use z3_engine::cleanup::CleanupReport;

/// Lists the open uploads under `prefix`, prints the table to `out`, and aborts those started at
/// least `max_age` before `now` unless `dry_run` ([`z3_engine::cleanup::cleanup`]).
///
/// # Errors
/// Listing failures and output errors; failed aborts are counted in the report and printed.
pub async fn cleanup(
    store: &dyn ObjectStore,
    prefix: &str,
    max_age: Duration,
    dry_run: bool,
    now: SystemTime,
    retry_config: &z3_s3::RetryConfig,
    out: &mut (dyn Write + Send),
) -> Result<CleanupReport> {
    let mut table = Rendered::new(Table { out, header: false });
    let result = z3_engine::cleanup::cleanup(
        store,
        prefix,
        max_age,
        dry_run,
        now,
        retry_config,
        &mut table,
    )
    .await;
    let report = result.map_err(|err| table.error(err))?;
    table.inner.header()?;
    Ok(report)
}

/// The original's table: `A | key | initiated`, a row per upload.
struct Table<'a> {
    out: &'a mut (dyn Write + Send),
    header: bool,
}

impl Table<'_> {
    fn header(&mut self) -> std::io::Result<()> {
        if !self.header {
            self.header = true;
            writeln!(self.out, "A | key | initiated")?;
        }
        Ok(())
    }
}

impl Render for Table<'_> {
    fn render(&mut self, event: Event) -> std::io::Result<()> {
        self.header()?;
        match event {
            Event::Upload(upload) => {
                let mark = match &upload.action {
                    UploadAction::KeptLocked { .. } => "L",
                    UploadAction::KeptJournaled { .. } => "J",
                    UploadAction::Abort => "X",
                    UploadAction::Young => " ",
                };
                let started = upload.initiated.map_or_else(
                    || "unknown".to_owned(),
                    |at| {
                        z3_core::humanize::utc(
                            at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                        )
                    },
                );
                writeln!(self.out, "{mark} | {} | {started}", upload.key)?;
                match &upload.action {
                    UploadAction::KeptLocked { why } => {
                        writeln!(self.out, "  kept: a backup may still be writing it; {why}")?;
                    }
                    UploadAction::KeptJournaled { why } => writeln!(self.out, "  kept: {why}")?,
                    _ => {}
                }
                Ok(())
            }
            Event::AbortFailed {
                key,
                upload_id,
                error,
            } => writeln!(self.out, "  cannot abort {key} ({upload_id}): {error}"),
            _ => Ok(()),
        }
    }
}

/// Runs `z3_mp_cleanup`.
///
/// # Errors
/// Configuration and S3 errors, and any abort that failed.
pub async fn main(args: CleanupArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let settings = crate::setup::settings(args.config.as_deref())?;
    let store = crate::setup::connect(&settings).await?;
    let max_age = Duration::from_secs_f64(args.max_age * 86_400.0);
    let (now, retry) = (SystemTime::now(), &settings.transfer.retry);
    let report = if args.json {
        let mut lines = z3_engine::json::JsonLines(&mut *out);
        let result = z3_engine::cleanup::cleanup(
            &store,
            &args.prefix,
            max_age,
            args.dry_run,
            now,
            retry,
            &mut lines,
        )
        .await;
        let (code, error) = match &result {
            Ok(report) => (u8::from(report.failed > 0), String::new()),
            Err(err) => (err.exit_code(), err.to_string()),
        };
        let reported = result.as_ref().map_err(|_| error.as_str());
        z3_engine::json::finished(out, "cleanup", None, code, reported)?;
        result?
    } else {
        let report = cleanup(&store, &args.prefix, max_age, args.dry_run, now, retry, out).await?;
        writeln!(
            out,
            "{}",
            report.summary(args.dry_run, &settings.bucket, args.max_age)
        )?;
        report
    };
    if report.failed > 0 {
        bail!("{} uploads could not be aborted", report.failed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_checked() {
        assert_eq!(parse_days("0.5"), Ok(0.5));
        assert!(parse_days("-1").is_err());
        assert!(parse_days("soon").is_err());
        assert!(parse_days("inf").is_err());
        // Panicked in Duration::from_secs_f64 before it was bounded.
        assert!(parse_days("1e300").is_err());
        assert_eq!(parse_days("36500"), Ok(MAX_AGE_DAYS));
    }
}

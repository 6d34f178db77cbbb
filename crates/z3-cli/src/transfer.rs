//! `pput` (stdin to S3) and `z3_get` (S3 to stdout): the original's plumbing commands, on the same
//! upload and download engines that `z3 backup` and `z3 restore` use.
//!
//! Both read `[main]` of the config file and the environment like `z3` does (never `[fs:…]` sections),
//! and print one-line errors. `pput` prints exactly one JSON line on success, as the original did.

// The doc comments of the flag structs are terminal help text, not rustdoc.
#![allow(clippy::doc_markdown, rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use z3_s3::{
    DownloadConfig, Downloader, MAX_OBJECT_SIZE, MAX_PART_SIZE, MultipartUploader, PartGrowth,
    PutOptions, UploadConfig, parse_size, part_size,
};

use crate::config::MAX_CONCURRENCY;
use crate::exit::UsageError;
use crate::progress::{Progress, ProgressMode, bar};
use crate::stdio::{stdin_file, stdout_file};

const PPUT_AFTER_HELP: &str = "\
BUCKET, S3 credentials, endpoint, CHUNK_SIZE, CONCURRENCY, MAX_RETRIES, MEMORY_LIMIT, S3_STORAGE_CLASS \
come from the environment or the [main] section of /etc/z3_backup/z3.conf, as for z3.

On success one JSON line goes to stdout: {\"status\": \"success\", \"etag\": \"...\"}. A stream that fails \
or is empty leaves no object and no open multipart upload.

Exit codes: 0 success, 1 error, 2 usage error.";

/// Upload standard input to S3 as one multipart object, with bounded memory.
#[derive(Debug, Parser)]
#[command(name = "pput", version = z3_engine::VERSION, after_help = PPUT_AFTER_HELP, max_term_width = 100, infer_long_args = true)]
pub struct PputArgs {
    /// Key of the object, including any prefix (the bucket comes from BUCKET)
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Part size, e.g. 64M (K/M/G/T are powers of 1024; 5M to 5G; config CHUNK_SIZE, default 256M)
    #[arg(short = 's', long, value_name = "SIZE", conflicts_with = "estimated")]
    pub chunk_size: Option<String>,

    /// Estimated total size (at most 5T): the stream is cut into at most 5,000 parts while within it
    /// (5% headroom), and parts grow beyond it, so any stream up to 5 TiB fits
    #[arg(long, value_name = "SIZE")]
    pub estimated: Option<String>,

    /// Read from this file descriptor instead of standard input
    #[arg(long, value_name = "FD")]
    pub file_descriptor: Option<u32>,

    /// Parts uploaded at once, 1 to 1024 (config CONCURRENCY, default 32)
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Object metadata, repeatable; split at the first '=' (x-amz-meta-KEY: VALUE)
    #[arg(long = "metadata", visible_alias = "meta", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,

    /// Storage class (config S3_STORAGE_CLASS, default STANDARD_IA)
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,

    /// Show progress on stderr even when it is not a terminal
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,

    /// Print nothing but errors and the result line (no progress)
    #[arg(long)]
    pub quiet: bool,

    /// Config file (default /etc/z3_backup/z3.conf; also Z3_CONFIG)
    #[arg(long, value_name = "PATH", env = "Z3_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
}

/// Write the object NAME of BUCKET to standard output, using parallel ranged downloads.
#[derive(Debug, Parser)]
#[command(
    name = "z3_get",
    version = z3_engine::VERSION,
    max_term_width = 100,
    after_help = "Exit codes: 0 success, 1 error (nothing is written for a missing object), 2 usage error."
)]
pub struct GetArgs {
    /// Key of the object, including any prefix
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Ranged GETs in flight, 1 to 1024 (default 8)
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Size of each ranged GET, at most 1G (default 8M)
    #[arg(short = 's', long, value_name = "SIZE")]
    pub chunk_size: Option<String>,

    /// Show progress on stderr even when it is not a terminal
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,

    /// No progress
    #[arg(long)]
    pub quiet: bool,

    /// Config file (default /etc/z3_backup/z3.conf; also Z3_CONFIG)
    #[arg(long, value_name = "PATH", env = "Z3_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
}

/// Splits `KEY=VALUE` items at the first `=` (the original's rule: `c=d=e` is `c` → `d=e`).
///
/// # Errors
/// [`UsageError`] naming an item without `=` or with an empty key.
pub fn parse_metadata(items: &[String]) -> Result<BTreeMap<String, String>, UsageError> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(UsageError(format!(
                "malformed metadata '{item}'; should be key=value"
            ))),
        })
        .collect()
}

fn size_arg(flag: &str, text: &str) -> Result<u64, UsageError> {
    parse_size(text).map_err(|e| UsageError(format!("invalid {flag} '{text}': {e}")))
}

/// `SIZE` of `flag`, at most `max` (`max_text` in the message).
fn bounded_size(flag: &str, text: &str, max: u64, max_text: &str) -> Result<u64, UsageError> {
    let size = size_arg(flag, text)?;
    if size > max {
        return Err(UsageError(format!(
            "invalid {flag} '{text}': must be at most {max_text}"
        )));
    }
    Ok(size)
}

/// `--concurrency N`: between 1 and [`MAX_CONCURRENCY`].
fn concurrency_arg(value: usize) -> Result<usize, UsageError> {
    if value == 0 || value > MAX_CONCURRENCY {
        return Err(UsageError(format!(
            "invalid --concurrency '{value}': must be between 1 and {MAX_CONCURRENCY}"
        )));
    }
    Ok(value)
}

/// The largest `z3_get -s`: 1 GiB (bigger ranges bring no speed, only memory).
pub const MAX_GET_CHUNK: u64 = 1 << 30;

/// What `pput`'s flags ask for, checked: the starting part size, the concurrency and the
/// estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PputLimits {
    /// The first part's size.
    pub part_size: u64,
    /// Parts in flight.
    pub concurrency: usize,
    /// `--estimated`, in bytes.
    pub estimate: Option<u64>,
}

impl PputArgs {
    /// Checks the numeric flags against their maxima (`-s` 5G and half of `memory_limit`,
    /// `--estimated` 5T, `--concurrency` [`MAX_CONCURRENCY`]); `chunk_size` and `concurrency`
    /// are the configured defaults. With an estimate, the part size is the budget's
    /// ([`z3_s3::PartSizer::with_budget`]).
    ///
    /// # Errors
    /// [`UsageError`] naming the flag and its value.
    pub fn limits(
        &self,
        chunk_size: u64,
        concurrency: usize,
        memory_limit: u64,
    ) -> Result<PputLimits, UsageError> {
        let estimate = self
            .estimated
            .as_deref()
            .map(|e| {
                bounded_size(
                    "--estimated",
                    e,
                    MAX_OBJECT_SIZE,
                    "5T (S3's largest object)",
                )
            })
            .transpose()?;
        let part_size = match (estimate, &self.chunk_size) {
            (Some(_), _) => {
                z3_s3::PartSizer::with_budget(0, estimate, PartGrowth::S3, Some(memory_limit))
                    .start()
            }
            (None, Some(chunk)) => {
                let size = bounded_size(
                    "--chunk-size",
                    chunk,
                    MAX_PART_SIZE,
                    "5G (S3's largest part)",
                )?;
                z3_s3::check_part_budget(size, memory_limit)
                    .map_err(|why| UsageError(format!("invalid --chunk-size '{chunk}': {why}")))?;
                part_size(None, size)
            }
            (None, None) => part_size(None, chunk_size),
        };
        let concurrency = concurrency_arg(self.concurrency.unwrap_or(concurrency))?;
        Ok(PputLimits {
            part_size,
            concurrency,
            estimate,
        })
    }
}

impl GetArgs {
    /// Checks the numeric flags: the range size (`-s`, 1 byte to [`MAX_GET_CHUNK`] and half of
    /// `memory_limit`, default 8M) and the concurrency (1 to [`MAX_CONCURRENCY`], default 8,
    /// fewer when `(concurrency + 2)` ranges would not fit `memory_limit`).
    ///
    /// # Errors
    /// [`UsageError`] naming the flag and its value.
    pub fn limits(&self, memory_limit: u64) -> Result<(u64, usize), UsageError> {
        let part = match &self.chunk_size {
            Some(chunk) => {
                let size = bounded_size("--chunk-size", chunk, MAX_GET_CHUNK, "1G")?;
                z3_s3::check_part_budget(size, memory_limit)
                    .map_err(|why| UsageError(format!("invalid --chunk-size '{chunk}': {why}")))?;
                size
            }
            None => 8 << 20,
        };
        if part == 0 {
            return Err(UsageError("--chunk-size must be positive".into()));
        }
        let concurrency = concurrency_arg(self.concurrency.unwrap_or(8))?;
        let config = DownloadConfig {
            part_size: part,
            concurrency,
            ..DownloadConfig::default()
        };
        Ok((part, config.within(Some(memory_limit)).concurrency))
    }
}

/// Runs `pput`: uploads the input and writes the result line to `out`.
///
/// # Errors
/// Usage errors, an empty or failing input, S3 failures; the multipart upload is aborted first.
pub async fn pput(args: PputArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let metadata = parse_metadata(&args.metadata)?;
    let settings = crate::setup::settings(args.config.as_deref())?;
    let PputLimits {
        part_size: part,
        concurrency,
        estimate,
    } = args.limits(
        settings.transfer.chunk_size,
        settings.transfer.concurrency,
        settings.transfer.memory_limit,
    )?;
    let store = Arc::new(crate::setup::connect(&settings).await?);
    let options = PutOptions {
        metadata,
        storage_class: Some(
            args.storage_class
                .clone()
                .unwrap_or_else(|| settings.storage_class.clone()),
        ),
        acl: Some("bucket-owner-full-control".to_owned()),
        ..PutOptions::default()
    };
    if !args.quiet {
        // A closed stderr must not panic (and skip the abort of the upload): ignore the error.
        let _ = writeln!(
            std::io::stderr(),
            "starting upload to {}/{} with chunksize {:.1}M using {concurrency} workers",
            settings.bucket,
            args.name,
            part as f64 / f64::from(1u32 << 20)
        );
    }
    let input = match args.file_descriptor {
        None | Some(0) => stdin_file().context("cannot read standard input")?,
        // /dev/fd/N reopens an inherited descriptor without unsafe code.
        Some(fd) => std::fs::File::open(format!("/dev/fd/{fd}"))
            .map_err(|e| UsageError(format!("cannot read file descriptor {fd}: {e}")))?,
    };
    z3_s3::grow_pipe(&input);
    let progress = bar(
        ProgressMode::from_flags(args.progress, args.quiet),
        &args.name,
        estimate,
    );
    let input = z3_engine::ProgressReader::new(input, Box::new(Progress::new(progress)));
    let uploader = MultipartUploader::new(
        store,
        UploadConfig {
            part_size: part,
            concurrency,
            retry: settings.transfer.retry.clone(),
            estimate,
            memory_limit: Some(settings.transfer.memory_limit),
            ..UploadConfig::default()
        },
    )
    .with_cancel(crate::interrupt::global().token().clone());
    let report = uploader
        .upload_blocking(&args.name, &options, input)
        .await
        .with_context(|| format!("upload to {}/{} failed", settings.bucket, args.name))?;
    // The original's exact line (Python json.dumps spacing); scripts parse it. The object is
    // complete; if the line cannot be written the caller never learns it, so pput fails.
    let line = format!(
        "{{\"status\": \"success\", \"etag\": {}}}",
        serde_json::to_string(&report.etag)?
    );
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .with_context(|| {
            format!(
                "{}/{} was uploaded, but its result line could not be written to standard output",
                settings.bucket, args.name
            )
        })?;
    Ok(())
}

/// Runs `z3_get`: writes the object to standard output in order.
///
/// # Errors
/// A missing object (nothing is written then), S3 failures, a closed output.
pub async fn get(args: GetArgs) -> Result<()> {
    let settings = crate::setup::settings(args.config.as_deref())?;
    let (part, concurrency) = args.limits(settings.transfer.memory_limit)?;
    let store = Arc::new(crate::setup::connect(&settings).await?);
    // Retried like every other request: one slow or dropped HEAD must not fail the download.
    let info =
        match z3_s3::head_with_retry(store.as_ref(), &args.name, &settings.transfer.retry).await {
            Ok(info) => info,
            Err(err) if err.kind() == z3_s3::ErrorKind::NotFound => {
                bail!("s3://{}/{} does not exist", settings.bucket, args.name)
            }
            Err(err) => return Err(err.into()),
        };
    let downloader = Downloader::new(
        store,
        DownloadConfig {
            part_size: part,
            concurrency,
            retry: settings.transfer.retry.clone(),
        },
    )
    .with_cancel(crate::interrupt::global().token().clone());
    let mut progress = Progress::new(bar(
        ProgressMode::from_flags(args.progress, args.quiet),
        &args.name,
        Some(info.size),
    ));
    let out = stdout_file().context("cannot write to standard output")?;
    // Pinned to the object the HEAD saw: a replacement mid-download fails instead of splicing.
    let result = downloader
        .download_blocking(&args.name, info.size, info.etag.as_deref(), out, |n| {
            progress.advance(usize::try_from(n).unwrap_or(usize::MAX));
        })
        .await;
    if let Err(err) = result {
        progress.fail();
        let failed = format!("download of {}/{} failed", settings.bucket, args.name);
        return Err(match err.kind() {
            z3_s3::ErrorKind::Cancelled => {
                anyhow::anyhow!("download of {}/{} stopped", settings.bucket, args.name)
            }
            z3_s3::ErrorKind::Sink => anyhow::Error::new(err)
                .context(failed)
                .context("cannot write to standard output"),
            _ => anyhow::Error::new(err).context(failed),
        });
    }
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_splits_at_the_first_equals_sign() {
        let parsed = parse_metadata(&["ana=are+mere".into(), "dana=are=pere".into()]).unwrap();
        assert_eq!(parsed["ana"], "are+mere");
        assert_eq!(parsed["dana"], "are=pere");
        let err = parse_metadata(&["bad".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed metadata 'bad'; should be key=value"
        );
        assert!(parse_metadata(&["=x".into()]).is_err());
    }

    #[test]
    fn flags_follow_the_original() {
        use clap::CommandFactory;
        PputArgs::command().debug_assert();
        GetArgs::command().debug_assert();
        let args =
            PputArgs::try_parse_from(["pput", "--meta", "a=b", "--est", "1G", "key"]).unwrap();
        assert_eq!(args.metadata, ["a=b"]);
        assert_eq!(args.estimated.as_deref(), Some("1G"));
        assert!(PputArgs::try_parse_from(["pput", "-s", "5M", "--estimated", "1G", "k"]).is_err());
        assert!(PputArgs::try_parse_from(["pput", "--progress", "--quiet", "k"]).is_err());
    }

    #[test]
    fn the_memory_limit_shapes_and_bounds_the_part_size() {
        const MIB: u64 = 1 << 20;
        let pput = |argv: &[&str]| PputArgs::try_parse_from(argv).unwrap();
        let big = pput(&["pput", "--estimated", "5T", "k"]);
        let part = |args: &PputArgs, limit| args.limits(256 * MIB, 32, limit).map(|l| l.part_size);
        // Under the default 1 GiB, a 5 TiB estimate gets the least parts S3 allows; with 4 GiB
        // the plain rule's.
        assert_eq!(part(&big, 1 << 30).unwrap(), 551 * MIB);
        assert_eq!(part(&big, 4 << 30).unwrap(), 1_154_487_209);
        assert_eq!(
            part(&pput(&["pput", "--estimated", "4T", "k"]), 1 << 30).unwrap(),
            512 * MIB
        );
        // An explicit part size must fit twice.
        let chunk = pput(&["pput", "-s", "600M", "k"]);
        assert_eq!(part(&chunk, 2 << 30).unwrap(), 600 * MIB);
        let err = part(&chunk, 1 << 30).unwrap_err();
        assert!(
            err.0.starts_with("invalid --chunk-size '600M'"),
            "{}",
            err.0
        );
        // z3_get: a range must fit twice, and ranges in flight shrink to the budget.
        let get = |argv: &[&str]| GetArgs::try_parse_from(argv).unwrap();
        assert!(get(&["z3_get", "-s", "600M", "k"]).limits(1 << 30).is_err());
        assert_eq!(get(&["z3_get", "k"]).limits(1 << 30).unwrap(), (8 * MIB, 8));
        assert_eq!(
            get(&["z3_get", "k"]).limits(40 * MIB).unwrap(),
            (8 * MIB, 3)
        );
    }
}

//! [`ZfsCli`]: the [`Zfs`] trait over the `zfs` program, for OpenZFS and zfs-fuse 0.7.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use z3_core::{DatasetName, FullSnapshotName, LocalSnapshot};

use crate::bookmark::{FullBookmarkName, LocalBookmark};
use crate::error::{Error, ErrorKind, Subject};
use crate::hold::{HOLD_PROPERTY_VALUE, hold_property, validate_hold_tag};
use crate::parse::{self, RawSnapshot, StderrClass};
use crate::runner::{Captured, Invocation};
use crate::ssh::SshTarget;
use crate::{
    EstimateMethod, ReceiveOptions, ReceiveSink, SendEstimate, SendFlags, SendStream, Zfs,
};

const UNKNOWN: u8 = 0;
/// `zfs list -p` works (OpenZFS) / `zfs send -nvP` works.
const MODERN: u8 = 1;
/// Only `zfs get -p` works (zfs-fuse) / no dry-run estimate (zfs-fuse).
const LEGACY: u8 = 2;

/// The real implementation: runs the `zfs` program with argument vectors.
///
/// The dialect is detected by attempt and remembered per instance: the modern command is tried
/// first, and a usage error (`invalid option`, `invalid type`, exit 2) switches that operation
/// to the zfs-fuse 0.7 command for the rest of the instance's life. Asking `zfs` for a
/// version instead would not work: zfs-fuse has no `zfs version`, and OpenZFS versions are
/// better told apart by what they accept than by what they claim.
#[derive(Debug)]
pub struct ZfsCli {
    program: PathBuf,
    via: Option<std::sync::Arc<SshTarget>>,
    list_dialect: AtomicU8,
    estimate_dialect: AtomicU8,
    /// `MODERN`: `zfs bookmark` exists; `LEGACY`: it does not (zfs-fuse).
    bookmark_dialect: AtomicU8,
}

impl Default for ZfsCli {
    fn default() -> Self {
        Self::new()
    }
}

impl ZfsCli {
    /// Uses `zfs` from `PATH`.
    #[must_use]
    pub fn new() -> Self {
        Self::with_program("zfs")
    }

    /// Uses the given program, e.g. `/usr/sbin/zfs` or a test double.
    #[must_use]
    pub fn with_program(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            via: None,
            list_dialect: AtomicU8::new(UNKNOWN),
            estimate_dialect: AtomicU8::new(UNKNOWN),
            bookmark_dialect: AtomicU8::new(UNKNOWN),
        }
    }

    /// Runs `zfs` on another host through `ssh` (see [`SshTarget`]); dialects are detected there
    /// as here.
    #[must_use]
    pub fn over_ssh(target: SshTarget) -> Self {
        let mut cli = Self::new();
        cli.via = Some(std::sync::Arc::new(target));
        cli
    }

    /// The host `zfs` runs on: `None` for this one.
    #[must_use]
    pub fn ssh_target(&self) -> Option<&SshTarget> {
        self.via.as_deref()
    }

    /// The program this instance runs.
    #[must_use]
    pub fn program(&self) -> &Path {
        &self.program
    }

    fn invocation(&self, args: &[&str], subject: Subject) -> Invocation {
        Invocation::new(
            &self.program,
            args.iter().map(|a| (*a).to_owned()).collect(),
            subject,
        )
        .via(self.via.clone())
    }

    /// `send [-i from] to` followed by `extra` flags placed before `-i`.
    fn send_args<'a>(flags: &[&'a str], from: Option<&'a str>, to: &'a str) -> Vec<&'a str> {
        let mut args = vec!["send"];
        args.extend_from_slice(flags);
        if let Some(from) = from {
            args.extend(["-i", from]);
        }
        args.push(to);
        args
    }

    /// `zfs send -n -P <flag> <to>` for each of `wanted`: success means the flag is there, a
    /// usage error (exit 2, `invalid option`) that it is not; with `missing_ok`, a missing `to`
    /// counts as success (the options were parsed before the name was looked up).
    async fn probe_send_flags(
        &self,
        to: &FullSnapshotName,
        wanted: SendFlags,
        missing_ok: bool,
    ) -> Result<SendFlags, Error> {
        let to_text = to.to_string();
        let mut supported = SendFlags::NONE;
        for arg in wanted.args() {
            let inv = self.invocation(
                &Self::send_args(&["-n", "-P", arg], None, &to_text),
                Subject::Snapshot,
            );
            let captured = inv.capture().await?;
            let understood = if captured.status.success() {
                true
            } else if captured.code() == Some(2)
                && parse::classify_stderr(&captured.stderr) == StderrClass::InvalidOption
            {
                false
            } else {
                let failure = inv.failure(captured.status, captured.stderr);
                if !(missing_ok && failure.is_not_found()) {
                    return Err(failure);
                }
                true
            };
            if understood {
                let one = SendFlags::from_metadata(arg.trim_start_matches('-'))
                    .map_err(|why| Error::new(ErrorKind::Parse, why))?;
                supported = supported.with(one);
            }
        }
        Ok(supported)
    }

    async fn list_modern(
        &self,
        dataset: &str,
    ) -> Result<Result<Vec<RawSnapshot>, Captured>, Error> {
        let inv = self.invocation(
            &[
                "list",
                "-H",
                "-p",
                "-t",
                "snapshot",
                "-o",
                "name,guid,createtxg,creation",
                "-s",
                "createtxg",
                "-d",
                "1",
                dataset,
            ],
            Subject::Dataset,
        );
        let captured = inv.capture().await?;
        if captured.status.success() {
            let rows = parse::snapshot_list(&captured.stdout).map_err(|e| parse_error(&inv, e))?;
            return Ok(Ok(rows));
        }
        if captured.code() == Some(2) && parse::classify_stderr(&captured.stderr).is_unsupported() {
            return Ok(Err(captured));
        }
        Err(inv.failure(captured.status, captured.stderr))
    }

    async fn list_legacy(&self, dataset: &str) -> Result<Vec<RawSnapshot>, Error> {
        let inv = self.invocation(
            &[
                "get",
                "-H",
                "-p",
                "-d",
                "1",
                "-o",
                "name,property,value",
                "guid,createtxg,creation",
                dataset,
            ],
            Subject::Dataset,
        );
        let captured = inv.run().await?;
        parse::snapshot_properties(&captured.stdout).map_err(|e| parse_error(&inv, e))
    }

    async fn estimate_dry_run(&self, from: Option<&str>, to: &str) -> Result<Option<u64>, Error> {
        let inv = self.invocation(&Self::send_args(&["-nvP"], from, to), Subject::Snapshot);
        let captured = inv.capture().await?;
        if captured.status.success() {
            // OpenZFS ≥0.6.5 prints the estimate on stdout, ≤0.6.4 on stderr.
            let parsed = match parse::send_estimate(&captured.stdout) {
                Ok(None) => parse::send_estimate(&captured.stderr),
                other => other,
            };
            return match parsed.map_err(|e| parse_error(&inv, e))? {
                Some(bytes) => Ok(Some(bytes)),
                None => Err(Error::new(
                    ErrorKind::Parse,
                    format!("`{}` printed no size estimate", inv.display()),
                )),
            };
        }
        if captured.code() == Some(2)
            && parse::classify_stderr(&captured.stderr) == StderrClass::InvalidOption
        {
            return Ok(None);
        }
        Err(inv.failure(captured.status, captured.stderr))
    }

    /// `referenced × compressratio` of `to`: its logical size, what a full `zfs send` streams.
    async fn estimate_referenced(&self, to: &str) -> Result<u64, Error> {
        let inv = self.invocation(
            &[
                "get",
                "-H",
                "-p",
                "-o",
                "value",
                "referenced,compressratio",
                to,
            ],
            Subject::Snapshot,
        );
        let captured = inv.run().await?;
        parse::logical_size(&captured.stdout).map_err(|e| parse_error(&inv, e))
    }

    /// Whether `name` (a dataset or snapshot) exists: `zfs list -H -o name <name>`.
    async fn exists(&self, name: &str, subject: Subject) -> Result<bool, Error> {
        let inv = self.invocation(&["list", "-H", "-o", "name", name], subject);
        match inv.run().await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Fails at once when an earlier attempt showed that this `zfs` has no bookmarks.
    fn check_bookmarks(&self) -> Result<(), Error> {
        if self.bookmark_dialect.load(Ordering::Relaxed) == LEGACY {
            return Err(bookmarks_unsupported(None));
        }
        Ok(())
    }

    /// Runs a bookmark command; a usage error naming the command or the type (zfs-fuse)
    /// becomes [`ErrorKind::Unsupported`] and is remembered.
    async fn run_bookmark_command(&self, inv: &Invocation) -> Result<Captured, Error> {
        let captured = inv.capture().await?;
        if captured.status.success() {
            self.bookmark_dialect.store(MODERN, Ordering::Relaxed);
            return Ok(captured);
        }
        if captured.code() == Some(2) && parse::classify_stderr(&captured.stderr).is_unsupported() {
            self.bookmark_dialect.store(LEGACY, Ordering::Relaxed);
            return Err(bookmarks_unsupported(Some(
                inv.failure(captured.status, captured.stderr),
            )));
        }
        Err(inv.failure(captured.status, captured.stderr))
    }
}

/// The error of a bookmark operation on a `zfs` without bookmarks.
pub(crate) fn bookmarks_unsupported(cause: Option<Error>) -> Error {
    let error = Error::new(
        ErrorKind::Unsupported,
        "this zfs has no bookmarks (zfs-fuse 0.7 has none); hold the snapshot instead",
    );
    match cause {
        Some(cause) => error.with_source(cause),
        None => error,
    }
}

fn parse_error(inv: &Invocation, e: parse::ParseError) -> Error {
    Error::new(
        ErrorKind::Parse,
        format!("cannot parse the output of `{}`", inv.display()),
    )
    .with_source(e)
}

/// Validates the rows `zfs` printed for `dataset`.
///
/// Rows of other datasets are dropped (defensive; `-d 1` should not print any). A snapshot
/// whose name z3's stricter rules refuse (zfs-fuse accepts `.` and `..` components) cannot be
/// represented as a [`FullSnapshotName`], so it is skipped with a warning instead of making
/// the whole dataset unusable.
fn to_local(dataset: &DatasetName, rows: Vec<RawSnapshot>) -> Vec<LocalSnapshot> {
    rows.into_iter()
        .filter_map(|row| match FullSnapshotName::parse(&row.name) {
            Ok(name) if name.dataset() == dataset => Some(LocalSnapshot {
                name,
                guid: row.guid,
                createtxg: row.createtxg,
                creation: row.creation,
            }),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(snapshot = %row.name, error = %e, "skipping snapshot with unsupported name");
                None
            }
        })
        .collect()
}

#[async_trait::async_trait]
impl Zfs for ZfsCli {
    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<LocalSnapshot>, Error> {
        let rows = if self.list_dialect.load(Ordering::Relaxed) == LEGACY {
            self.list_legacy(dataset.as_str()).await?
        } else {
            match self.list_modern(dataset.as_str()).await? {
                Ok(rows) => {
                    self.list_dialect.store(MODERN, Ordering::Relaxed);
                    rows
                }
                Err(usage) => {
                    tracing::debug!(stderr = %usage.stderr, "zfs list -p unsupported, using zfs get");
                    self.list_dialect.store(LEGACY, Ordering::Relaxed);
                    self.list_legacy(dataset.as_str()).await?
                }
            }
        };
        Ok(to_local(dataset, rows))
    }

    async fn dataset_exists(&self, dataset: &DatasetName) -> Result<bool, Error> {
        self.exists(dataset.as_str(), Subject::Dataset).await
    }

    async fn list_datasets(&self, root: &DatasetName) -> Result<Vec<DatasetName>, Error> {
        let args = ["list", "-H", "-o", "name", "-r", "-t", "filesystem,volume"];
        let inv = self.invocation(&[&args[..], &[root.as_str()]].concat(), Subject::Dataset);
        let captured = inv.run().await?;
        let mut names = captured
            .stdout
            .lines()
            .filter(|line| !line.is_empty())
            .zip(1..)
            .map(|(line, n)| {
                DatasetName::new(line.trim_end_matches('\r')).map_err(|e| {
                    let message = format!("a dataset name z3 cannot use: {e}");
                    parse_error(&inv, parse::ParseError { line: n, message })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        Ok(names)
    }

    /// Dry-run estimate, or on zfs-fuse (which has no `send -n`) the logical size of `to`:
    /// `referenced × compressratio`.
    ///
    /// `referenced` alone is the *compressed* size on disk, while the stream is uncompressed:
    /// a 2:1 compressed dataset sends twice its `referenced` (issue 12). It is the size of the
    /// whole snapshot, so for an incremental it over-estimates, sometimes by far. That is
    /// acceptable because z3 uses the estimate only to choose the multipart part size: a
    /// larger estimate gives larger parts, never a failed upload; and since the part sizer
    /// leaves half the parts for a stream that outgrows its estimate, an under-estimate cannot
    /// fail either.
    async fn estimate_send_size(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<SendEstimate, Error> {
        let from_text = from.map(ToString::to_string);
        let to_text = to.to_string();
        if self.estimate_dialect.load(Ordering::Relaxed) != LEGACY {
            if let Some(bytes) = self
                .estimate_dry_run(from_text.as_deref(), &to_text)
                .await?
            {
                self.estimate_dialect.store(MODERN, Ordering::Relaxed);
                return Ok(SendEstimate {
                    bytes,
                    method: EstimateMethod::DryRun,
                });
            }
            tracing::debug!("zfs send -n unsupported, estimating from the referenced property");
            self.estimate_dialect.store(LEGACY, Ordering::Relaxed);
        }
        Ok(SendEstimate {
            bytes: self.estimate_referenced(&to_text).await?,
            method: EstimateMethod::Referenced,
        })
    }

    async fn send(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
    ) -> Result<SendStream, Error> {
        let from_text = from.map(ToString::to_string);
        let to_text = to.to_string();
        self.invocation(
            &Self::send_args(&[], from_text.as_deref(), &to_text),
            Subject::Snapshot,
        )
        .stream_from()
    }

    async fn receive(
        &self,
        target: &FullSnapshotName,
        options: &ReceiveOptions,
    ) -> Result<ReceiveSink, Error> {
        let target_text = target.to_string();
        let mut args = vec!["receive"];
        if options.force {
            args.push("-F");
        }
        args.push(&target_text);
        self.invocation(&args, Subject::Snapshot).stream_into()
    }

    /// `zfs set z3:hold:<tag>=on <snapshot>`, then `zfs hold <tag> <snapshot>`: the mark comes
    /// first so that a crash in between leaves a mark without a hold, never the reverse.
    async fn hold(&self, snapshot: &FullSnapshotName, tag: &str) -> Result<(), Error> {
        validate_hold_tag(tag)?;
        let snap = snapshot.to_string();
        let mark = format!("{}={HOLD_PROPERTY_VALUE}", hold_property(tag));
        self.invocation(&["set", &mark, &snap], Subject::Snapshot)
            .run()
            .await?;
        let inv = self.invocation(&["hold", tag, &snap], Subject::Snapshot);
        let captured = inv.capture().await?;
        if captured.status.success()
            || parse::classify_stderr(&captured.stderr) == StderrClass::HoldExists
        {
            return Ok(());
        }
        Err(inv.failure(captured.status, captured.stderr))
    }

    /// `zfs release <tag> <snapshot>`, then `zfs inherit z3:hold:<tag> <snapshot>` (clears the
    /// mark).
    ///
    /// `no such tag on this dataset` is success. zfs-fuse says `dataset does not exist` also
    /// when the snapshot exists but has no hold at all (captured: `cannot release 'z3' from
    /// 'pool/fs@b': dataset does not exist`), so a not-found answer is checked with
    /// `zfs list` before it counts as a missing snapshot.
    async fn release(&self, snapshot: &FullSnapshotName, tag: &str) -> Result<(), Error> {
        validate_hold_tag(tag)?;
        let snap = snapshot.to_string();
        let inv = self.invocation(&["release", tag, &snap], Subject::Snapshot);
        let captured = inv.capture().await?;
        if !captured.status.success() {
            match parse::classify_stderr(&captured.stderr) {
                StderrClass::NoSuchHold => {}
                StderrClass::NotFound { .. } if self.exists(&snap, Subject::Snapshot).await? => {}
                _ => return Err(inv.failure(captured.status, captured.stderr)),
            }
        }
        self.invocation(&["inherit", &hold_property(tag), &snap], Subject::Snapshot)
            .run()
            .await
            .map(|_| ())
    }

    /// `zfs get -H -p -d 1 -s local -o name,property,value z3:hold:<tag> <dataset>`: one call
    /// on both dialects (zfs-fuse has `get -d` and `-s`). `-s local` because snapshots inherit
    /// user properties from their filesystem.
    async fn held_snapshots(
        &self,
        dataset: &DatasetName,
        tag: &str,
    ) -> Result<Vec<FullSnapshotName>, Error> {
        validate_hold_tag(tag)?;
        let property = hold_property(tag);
        let inv = self.invocation(
            &[
                "get",
                "-H",
                "-p",
                "-d",
                "1",
                "-s",
                "local",
                "-o",
                "name,property,value",
                &property,
                dataset.as_str(),
            ],
            Subject::Dataset,
        );
        let captured = inv.run().await?;
        let names =
            parse::held_snapshots(&captured.stdout, &property).map_err(|e| parse_error(&inv, e))?;
        Ok(names
            .into_iter()
            .filter_map(|name| match FullSnapshotName::parse(&name) {
                Ok(name) if name.dataset() == dataset => Some(name),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(snapshot = %name, error = %e, "skipping held snapshot with unsupported name");
                    None
                }
            })
            .collect())
    }

    async fn bookmark(
        &self,
        snapshot: &FullSnapshotName,
        bookmark: &FullBookmarkName,
    ) -> Result<(), Error> {
        check_same_dataset(snapshot, bookmark)?;
        self.check_bookmarks()?;
        let (snap, mark) = (snapshot.to_string(), bookmark.to_string());
        let inv = self.invocation(&["bookmark", &snap, &mark], Subject::Snapshot);
        self.run_bookmark_command(&inv).await.map(|_| ())
    }

    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<LocalBookmark>, Error> {
        self.check_bookmarks()?;
        let inv = self.invocation(
            &[
                "list",
                "-H",
                "-p",
                "-t",
                "bookmark",
                "-o",
                "name,guid,createtxg,creation",
                "-s",
                "createtxg",
                "-d",
                "1",
                dataset.as_str(),
            ],
            Subject::Dataset,
        );
        let captured = self.run_bookmark_command(&inv).await?;
        let rows = parse::bookmark_list(&captured.stdout).map_err(|e| parse_error(&inv, e))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match FullBookmarkName::parse(&row.name) {
                Ok(name) if name.dataset() == dataset => Some(LocalBookmark {
                    name,
                    guid: row.guid,
                    createtxg: row.createtxg,
                    creation: row.creation,
                }),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(bookmark = %row.name, error = %e, "skipping bookmark with unsupported name");
                    None
                }
            })
            .collect())
    }

    async fn supported_send_flags(
        &self,
        to: &FullSnapshotName,
        wanted: SendFlags,
    ) -> Result<SendFlags, Error> {
        self.probe_send_flags(to, wanted, false).await
    }

    async fn receivable_send_flags(
        &self,
        probe: &FullSnapshotName,
        wanted: SendFlags,
    ) -> Result<SendFlags, Error> {
        self.probe_send_flags(probe, wanted, true).await
    }

    async fn send_with_flags(
        &self,
        from: Option<&FullSnapshotName>,
        to: &FullSnapshotName,
        flags: SendFlags,
    ) -> Result<SendStream, Error> {
        let (from_text, to_text) = (from.map(ToString::to_string), to.to_string());
        self.invocation(
            &Self::send_args(&flags.args(), from_text.as_deref(), &to_text),
            Subject::Snapshot,
        )
        .stream_from()
    }

    async fn send_from_bookmark(
        &self,
        from: &FullBookmarkName,
        to: &FullSnapshotName,
    ) -> Result<SendStream, Error> {
        self.check_bookmarks()?;
        let (from_text, to_text) = (from.to_string(), to.to_string());
        self.invocation(
            &Self::send_args(&[], Some(&from_text), &to_text),
            Subject::Snapshot,
        )
        .stream_from()
    }
}

/// A bookmark is made in its snapshot's dataset; anything else is refused before `zfs` runs.
pub(crate) fn check_same_dataset(
    snapshot: &FullSnapshotName,
    bookmark: &FullBookmarkName,
) -> Result<(), Error> {
    if snapshot.dataset() == bookmark.dataset() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidName,
        format!("bookmark '{bookmark}' is not in the dataset of '{snapshot}'"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_arguments() {
        assert_eq!(
            ZfsCli::send_args(&["-nvP"], Some("p/fs@a"), "p/fs@b"),
            ["send", "-nvP", "-i", "p/fs@a", "p/fs@b"]
        );
        assert_eq!(ZfsCli::send_args(&[], None, "p/fs@b"), ["send", "p/fs@b"]);
    }

    #[test]
    fn to_local_skips_other_datasets_and_unsupported_names() {
        let ds = DatasetName::new("p/fs").unwrap();
        let rows = vec![
            RawSnapshot {
                name: "p/fs@a".into(),
                guid: 1,
                createtxg: 2,
                creation: Some(1_796_425_946),
            },
            RawSnapshot {
                name: "p/fs/child@a".into(),
                guid: 3,
                createtxg: 4,
                creation: None,
            },
            RawSnapshot {
                name: "p/fs@..".into(),
                guid: 5,
                createtxg: 6,
                creation: None,
            },
        ];
        let local = to_local(&ds, rows);
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].name.to_string(), "p/fs@a");
        assert_eq!((local[0].guid, local[0].createtxg), (1, 2));
        assert_eq!(local[0].creation, Some(1_796_425_946));
    }
}

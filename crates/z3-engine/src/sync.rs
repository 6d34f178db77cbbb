//! `z3_ssh_sync`'s engine: push or pull snapshots between two `Zfs` sides (the local `zfs` and
//! one reached over SSH).
//!
//! The decisions are the original's (docs/compatibility.md, "`z3_ssh_sync`"; `z3_core::plan_sync`):
//! an empty destination gets the source's latest snapshot as a full stream; otherwise everything after
//! the destination's latest snapshot, which must exist on the source, is sent incrementally; an
//! up-to-date destination is a no-op. Each snapshot is one `zfs send -i` stream, buffered
//! in-process, whose sender's and receiver's exit statuses are both checked, so a failing remote
//! `zfs receive` fails the command.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use z3_core::{DatasetName, FullSnapshotName, LocalChain, SnapshotName, SyncError, plan_sync};
use z3_zfs::{ReceiveOptions, Zfs};

use crate::cancel::Interrupt;
pub use crate::error::Diverged;
use crate::error::Error;
use crate::progress::{Progress, ProgressReader};
use crate::receive::Receive;
use crate::report::{Event, Events, Kind, SnapshotSent, SyncReport};

/// Chunks buffered between sender and receiver: 128 MiB, like the original's `mbuffer -m 200m`
/// within a factor of two, so a bursty network does not stall `zfs send`.
const BUFFERED_CHUNKS: usize = 128;

/// One side of a sync.
#[derive(Debug, Clone)]
pub struct Side {
    /// Its `zfs`.
    pub zfs: Arc<dyn Zfs>,
    /// The dataset there.
    pub dataset: DatasetName,
    /// How to name it in messages (`host:dataset` for the remote one).
    pub label: String,
}

/// A resolved sync.
#[derive(Debug, Clone)]
pub struct Sync {
    /// Where snapshots come from.
    pub source: Side,
    /// Where they go.
    pub destination: Side,
    /// Only snapshots starting with this.
    pub prefix: String,
    /// Plan only: report what would be sent, send nothing.
    pub dry_run: bool,
    /// `zfs receive -F` on the destination.
    pub force: bool,
    /// Where the byte counts of each stream go.
    pub progress: Arc<dyn Progress>,
}

impl Sync {
    /// Plans and runs the sync; one [`Event::Sent`] per snapshot as it is sent (or would be,
    /// in a dry run).
    ///
    /// # Errors
    /// [`Error::Integrity`] when the sides diverged, [`Error::Cancelled`], and
    /// [`Error::Failed`] for no snapshots on the source and any failure of `zfs send`,
    /// `zfs receive` or ssh, naming the snapshot.
    pub async fn run(
        &self,
        events: &mut dyn Events,
        interrupt: &Interrupt,
    ) -> std::result::Result<SyncReport, Error> {
        self.run_inner(events, interrupt)
            .await
            .map_err(|err| Error::classify(err, interrupt.signal()))
    }

    async fn run_inner(
        &self,
        events: &mut dyn Events,
        interrupt: &Interrupt,
    ) -> Result<SyncReport> {
        let source = self.chain(&self.source, false).await?;
        let destination = self.chain(&self.destination, true).await?;
        let short = |chain: &LocalChain| -> Vec<SnapshotName> {
            chain
                .entries()
                .iter()
                .map(|e| e.snapshot.name.snapshot().clone())
                .collect()
        };
        let (source_names, destination_names) = (short(&source), short(&destination));
        let plan = match plan_sync(&source_names, &destination_names) {
            Ok(plan) => plan,
            Err(err @ SyncError::DestinationDiverged) => {
                let latest = destination_names.last().map(ToString::to_string);
                bail!(Diverged(format!(
                    "{err} ({}@{} is not on {})",
                    self.destination.label,
                    latest.unwrap_or_default(),
                    self.source.label
                )));
            }
            Err(err) => {
                return Err(anyhow!(err).context(format!(
                    "no snapshots matching '{}' on {}",
                    self.prefix, self.source.label
                )));
            }
        };
        let mut report = SyncReport {
            sent: Vec::new(),
            up_to_date: false,
            dry_run: self.dry_run,
        };
        let Some(plan) = plan else {
            report.up_to_date = true;
            return Ok(report);
        };
        if let Some(base) = &plan.base {
            self.check_same_snapshot(&source, &destination, base)?;
        }
        // One `-i` step per snapshot after the base, or the target alone as a full.
        let mut steps: Vec<(Option<SnapshotName>, SnapshotName)> = Vec::new();
        match &plan.base {
            None => steps.push((None, plan.target.clone())),
            Some(base) => {
                let mut prev = base.clone();
                let after = source_names.iter().skip_while(|s| *s != base).skip(1);
                for next in after {
                    steps.push((Some(prev), next.clone()));
                    prev = next.clone();
                    if *next == plan.target {
                        break;
                    }
                }
            }
        }
        for (base, next) in steps {
            if let Some(signal) = interrupt.signal() {
                bail!(
                    "stopped before sending {next} ({} received)",
                    crate::cancel::signal_name(signal)
                );
            }
            let sent = self.send_one(base.as_ref(), &next, interrupt).await?;
            events.event(Event::Sent(sent.clone()))?;
            report.sent.push(sent);
        }
        Ok(report)
    }

    async fn chain(&self, side: &Side, missing_ok: bool) -> Result<LocalChain> {
        match side.zfs.list_snapshots(&side.dataset).await {
            Ok(list) => Ok(LocalChain::new(&list, &self.prefix)),
            Err(err) if missing_ok && err.is_not_found() => Ok(LocalChain::default()),
            Err(err) => {
                Err(anyhow!(err).context(format!("cannot list snapshots of {}", side.label)))
            }
        }
    }

    /// The base must be the same snapshot on both sides, not just the same name.
    fn check_same_snapshot(
        &self,
        source: &LocalChain,
        destination: &LocalChain,
        base: &SnapshotName,
    ) -> Result<()> {
        let guid = |chain: &LocalChain, side: &Side| {
            chain
                .find(&format!("{}@{base}", side.dataset))
                .map(|e| e.snapshot.guid)
        };
        match (
            guid(source, &self.source),
            guid(destination, &self.destination),
        ) {
            (Some(a), Some(b)) if a != b => Err(anyhow!(Diverged(format!(
                "{}@{base} and {}@{base} are different snapshots with the same name (guid {a} vs {b})",
                self.source.label, self.destination.label
            )))),
            _ => Ok(()),
        }
    }

    async fn send_one(
        &self,
        base: Option<&SnapshotName>,
        next: &SnapshotName,
        interrupt: &Interrupt,
    ) -> Result<SnapshotSent> {
        let started = Instant::now();
        let from = base
            .map(|b| FullSnapshotName::new(self.source.dataset.clone(), b.clone()))
            .transpose()?;
        let to = FullSnapshotName::new(self.source.dataset.clone(), next.clone())?;
        let target = FullSnapshotName::new(self.destination.dataset.clone(), next.clone())?;
        let what = match &from {
            Some(from) => format!(
                "{}@{next} (incremental from {})",
                self.source.label,
                from.snapshot()
            ),
            None => format!("{}@{next} (full)", self.source.label),
        };
        let mut sent = SnapshotSent {
            what: what.clone(),
            destination: format!("{}@{next}", self.destination.label),
            kind: if from.is_some() {
                Kind::Incremental
            } else {
                Kind::Full
            },
            bytes: 0,
            duration: Duration::ZERO,
            dry_run: self.dry_run,
        };
        if self.dry_run {
            return Ok(sent);
        }
        let estimate = self
            .source
            .zfs
            .estimate_send_size(from.as_ref(), &to)
            .await
            .ok()
            .map(|e| e.bytes);
        let stream = self
            .source
            .zfs
            .send(from.as_ref(), &to)
            .await
            .with_context(|| format!("cannot start zfs send of {what}"))?;
        let sink = self
            .destination
            .zfs
            .receive(&target, &ReceiveOptions { force: self.force })
            .await
            .with_context(|| format!("cannot start zfs receive on {}", self.destination.label))?;
        let progress = self.progress.start(&format!("{next}"), estimate);
        let stream: z3_codec::BoxedReader = Box::new(ProgressReader::new(stream, progress));
        sent.bytes = Receive::sync(interrupt, BUFFERED_CHUNKS)
            .run(stream, Some(sink))
            .await
            .map(|digest| digest.len)
            .with_context(|| {
                format!("sending {what} to {}@{next} failed", self.destination.label)
            })?;
        sent.duration = started.elapsed();
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    use z3_zfs::SendStream;

    use crate::receive::pump_tests::stalled_sink;

    #[tokio::test]
    async fn an_interrupt_stops_a_sync_whose_receiver_stopped_reading() {
        let (sink, killed, _reader) = stalled_sink();
        let source = std::io::Cursor::new(vec![7u8; 16 << 20]);
        let stream = SendStream::from_parts(source, async { Ok(()) }, "zfs send p@s".into());
        let stream = ProgressReader::new(stream, crate::NoProgress.start("p@s", None));
        let interrupt = Interrupt::new();
        let trigger = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.trigger(crate::cancel::SIGINT);
        });
        // Fails on the old pump: the blocked write never returned, so this timed out.
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            Receive::sync(&interrupt, BUFFERED_CHUNKS).run(Box::new(stream), Some(sink)),
        )
        .await
        .expect("the sync ignored the interrupt while the receiver was not reading");
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("was not reading its input"), "{err}");
        assert!(killed.load(Ordering::SeqCst), "the receiver was not killed");
    }
}

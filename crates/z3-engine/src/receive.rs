//! The verified receive: moving a decoded backup stream into `zfs receive` so that the receiver
//! commits only a stream that arrived whole and matches its seal, and a stop request is never
//! ignored, even by a receiver that stopped reading.

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use z3_codec::BoxedReader;
use z3_core::{Digest, DigestMismatch};

use crate::cancel::Interrupt;

/// Buffer size for moving bytes from a download into `zfs receive`.
pub(crate) const PUMP_BUFFER: usize = 1 << 20;
/// Bytes of each stream held back from `zfs receive` until the digest matched: far more than
/// the END record (312 bytes) that makes it commit.
const HOLD_BACK: usize = 1 << 20;
/// The pump hands bytes on once this much is pending, keeping [`HOLD_BACK`]: moving the held
/// tail to the front of the buffer then costs one copy of `HOLD_BACK` per 4 MiB pumped.
const RELEASE_AT: usize = HOLD_BACK + 4 * PUMP_BUFFER;

/// Chunks read at a time when reading ahead of the receiver.
const CHUNK: usize = 1 << 20;

/// How a stream is received: the one place where stream bytes reach `zfs receive` (restore,
/// `z3_ssh_sync`) or are read to their end and hashed (verify).
///
/// Whatever the caller, the rules are the same. The stream's BLAKE3 digest is computed as it
/// passes. With an `expected` digest the last MiB is held back until the
/// stream ended and its digest equals `expected` (from the object's seal): a ZFS stream ends
/// with its END record, so `zfs receive` cannot commit a stream whose tail it has not seen. On a
/// mismatch, a read error (download, decoder or `zfs send` failure) or an interrupt the sink is
/// dropped, which kills the receiver so it commits nothing. Every write (and the wait for the
/// receiver to finish) is raced against the interrupt, so a receiver that stopped reading
/// cannot make a stop request wait. A write error means the receiver died: its own exit status
/// and stderr say why.
#[derive(Debug, Clone, Copy)]
pub struct Receive<'a> {
    interrupt: &'a Interrupt,
    expected: Option<&'a Digest>,
    /// The object the stream comes from, for a digest mismatch.
    key: &'a str,
    /// What is read, for a read error: "the backup stream", "zfs send".
    source: &'static str,
    /// What an interrupt killed, for its message.
    killed: &'static str,
    /// Hold the tail back until the digest is known (restore).
    hold_back: bool,
    /// Read ahead of a slow receiver on a task of its own, up to this many chunks (0: no).
    read_ahead: usize,
}

impl<'a> Receive<'a> {
    /// A restore: the decoded stream of the object at `key` into `zfs receive`, its tail held
    /// back until its digest equals `expected` (none for objects without a seal).
    #[must_use]
    pub fn restore(interrupt: &'a Interrupt, expected: Option<&'a Digest>, key: &'a str) -> Self {
        Self {
            interrupt,
            expected,
            key,
            source: "the backup stream",
            killed: "zfs receive was killed before it committed anything",
            hold_back: true,
            read_ahead: 0,
        }
    }

    /// A sync: `zfs send` into the other side's `zfs receive`, reading up to `read_ahead`
    /// chunks of 1 MiB ahead so a bursty network does not stall the sender.
    #[must_use]
    pub fn sync(interrupt: &'a Interrupt, read_ahead: usize) -> Self {
        Self {
            interrupt,
            expected: None,
            key: "",
            source: "zfs send",
            killed: "zfs send and zfs receive were killed",
            hold_back: false,
            read_ahead,
        }
    }

    /// A read-back (verify): the stream is read to its end and hashed; nothing receives it.
    #[must_use]
    pub fn read_back(interrupt: &'a Interrupt) -> Self {
        Self {
            interrupt,
            expected: None,
            key: "",
            source: "the backup stream",
            killed: "nothing was received",
            hold_back: false,
            read_ahead: 0,
        }
    }

    /// Moves `reader` into `sink` (or only reads it, without one) and returns the stream's
    /// digest; the sink is finished only when the whole stream arrived intact.
    ///
    /// # Errors
    /// A read error, a digest mismatch ([`DigestMismatch`]), the receiver's failure, or the
    /// interrupt; the receiver is killed before it commits in every case but the last write.
    pub async fn run(
        &self,
        reader: BoxedReader,
        mut sink: Option<z3_zfs::ReceiveSink>,
    ) -> Result<Digest> {
        let hold_back = if self.hold_back { HOLD_BACK } else { 0 };
        let release_at = if self.hold_back { RELEASE_AT } else { 1 };
        let mut source = Source::new(reader, self.read_ahead);
        let mut pending: Vec<u8> = Vec::with_capacity(RELEASE_AT + PUMP_BUFFER);
        let mut hasher = blake3::Hasher::new();
        let mut total = 0u64;
        loop {
            let before = pending.len();
            let read = tokio::select! {
                biased;
                () = self.interrupt.cancelled() => {
                    source.stop();
                    drop(sink);
                    bail!("stopped after {total} bytes: {}", self.killed);
                }
                read = source.read(&mut pending) => read,
            };
            match read {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => {
                    source.stop();
                    drop(sink);
                    return Err(anyhow!(err)).context(format!("reading {} failed", self.source));
                }
            }
            hasher.update(&pending[before..]);
            total += (pending.len() - before) as u64;
            if pending.len() >= release_at {
                let release = pending.len() - hold_back;
                if let Some(receiver) = sink {
                    sink = match write_or_explain(receiver, &pending[..release], self.interrupt)
                        .await
                    {
                        Ok(receiver) => Some(receiver),
                        Err(err) => {
                            source.stop();
                            return Err(err);
                        }
                    };
                }
                pending.drain(..release);
            }
        }
        // The source ended: the stream reported end-of-file, i.e. its producer succeeded.
        source.finish().await;
        let actual = Digest {
            len: total,
            blake3: *hasher.finalize().as_bytes(),
        };
        if let Some(expected) = self.expected
            && actual != *expected
        {
            drop(sink);
            return Err(DigestMismatch {
                key: self.key.to_owned(),
                what: "the zfs stream",
                expected: *expected,
                actual,
            })
            .context("zfs receive was killed before it saw the end of the stream");
        }
        if let Some(receiver) = sink {
            let receiver = write_or_explain(receiver, &pending, self.interrupt).await?;
            finish_or_kill(receiver, self.interrupt).await?;
        }
        Ok(actual)
    }
}

/// Where the bytes come from: the reader itself, or a task reading ahead into a channel.
enum Source {
    Direct(BoxedReader),
    Ahead {
        chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Source {
    fn new(mut reader: BoxedReader, read_ahead: usize) -> Self {
        if read_ahead == 0 {
            return Self::Direct(reader);
        }
        let (tx, chunks) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(read_ahead);
        let task = tokio::spawn(async move {
            loop {
                let mut buf = BytesMut::with_capacity(CHUNK);
                match reader.read_buf(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {
                        if tx.send(Ok(buf.freeze())).await.is_err() {
                            break;
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        break;
                    }
                }
            }
        });
        Self::Ahead { chunks, task }
    }

    /// Appends the next bytes to `pending`; `false` at the end of the stream.
    async fn read(&mut self, pending: &mut Vec<u8>) -> std::io::Result<bool> {
        match self {
            Self::Direct(reader) => {
                pending.reserve(PUMP_BUFFER);
                Ok(reader.read_buf(pending).await? > 0)
            }
            Self::Ahead { chunks, .. } => match chunks.recv().await {
                None => Ok(false),
                Some(chunk) => {
                    pending.extend_from_slice(&chunk?);
                    Ok(true)
                }
            },
        }
    }

    /// Stops reading (the reader, e.g. `zfs send`, is dropped and killed).
    fn stop(&self) {
        if let Self::Ahead { task, .. } = self {
            task.abort();
        }
    }

    /// Waits for the reading task after the end of the stream.
    async fn finish(self) {
        if let Self::Ahead { task, .. } = self {
            let _ = task.await;
        }
    }
}

/// Writes to `zfs receive`; if that fails the receiver died, and its exit status says why.
///
/// The write is raced against `interrupt`: a receiver that stopped reading (stalled disk, hung
/// `ssh`) blocks the write for as long as it likes, and a signal must still stop the command.
/// On an interrupt the sink is dropped, which kills the receiver; it has not seen the end of
/// the stream (the pump holds the tail back), so it commits nothing.
///
/// # Errors
/// The interrupt fired (the receiver was killed), or the receiver died: its exit status and
/// stderr, or the write error if it exited cleanly.
pub async fn write_or_explain(
    mut sink: z3_zfs::ReceiveSink,
    bytes: &[u8],
    interrupt: &Interrupt,
) -> Result<z3_zfs::ReceiveSink> {
    let written = tokio::select! {
        biased;
        () = interrupt.cancelled() => None,
        written = sink.write_all(bytes) => Some(written),
    };
    match written {
        None => {
            let receiver = sink.description().to_owned();
            drop(sink);
            Err(anyhow!(
                "stopped while `{receiver}` was not reading its input: it was killed before it committed anything"
            ))
        }
        Some(Ok(())) => Ok(sink),
        Some(Err(write_err)) => match sink.finish().await {
            Err(zfs_err) => Err(anyhow!(zfs_err)),
            Ok(()) => Err(anyhow!(write_err)).context("writing to zfs receive failed"),
        },
    }
}

/// Ends the stream and waits for the receiver, unless `interrupt` fires first: then the
/// receiver is killed (dropping the unfinished `finish` drops the child, `kill_on_drop`).
/// Every byte was written by then, so the receiver may already have committed; the error says so.
///
/// # Errors
/// The interrupt fired first, or the receiver failed (its exit status and stderr).
pub async fn finish_or_kill(sink: z3_zfs::ReceiveSink, interrupt: &Interrupt) -> Result<()> {
    let receiver = sink.description().to_owned();
    tokio::select! {
        biased;
        () = interrupt.cancelled() => Err(anyhow!(
            "stopped while waiting for `{receiver}` to finish: it was killed (it had the whole stream and may have committed it)"
        )),
        finished = sink.finish() => finished.map_err(Into::into),
    }
}

#[cfg(test)]
pub(crate) mod pump_tests {
    //! A receiver that stops reading must not make the pump deaf to a signal.
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    struct OnDrop(Arc<AtomicBool>);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A sink whose reader never reads (the write blocks once the 64 KiB duplex buffer is
    /// full) and whose "process" records being killed (its completion future dropped unfinished).
    pub(crate) fn stalled_sink() -> (
        z3_zfs::ReceiveSink,
        Arc<AtomicBool>,
        tokio::io::DuplexStream,
    ) {
        let (writer, reader) = tokio::io::duplex(64 << 10);
        let killed = Arc::new(AtomicBool::new(false));
        let guard = OnDrop(Arc::clone(&killed));
        let completion = async move {
            std::future::pending::<()>().await;
            drop(guard);
            Ok(())
        };
        (
            z3_zfs::ReceiveSink::from_parts(writer, completion, "zfs receive pool/fs@s".into()),
            killed,
            reader,
        )
    }

    #[tokio::test]
    async fn an_interrupt_stops_a_pump_whose_receiver_stopped_reading() {
        let (sink, killed, _reader) = stalled_sink();
        let stream: BoxedReader = Box::new(std::io::Cursor::new(vec![7u8; 16 << 20]));
        let interrupt = Interrupt::new();
        let trigger = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.trigger(crate::cancel::SIGTERM);
        });
        // Fails on the old pump: the blocked write never returned, so this timed out.
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            Receive::restore(&interrupt, None, "k").run(stream, Some(sink)),
        )
        .await
        .expect("the pump ignored the interrupt while the receiver was not reading");
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("was not reading its input"), "{err}");
        assert!(killed.load(Ordering::SeqCst), "the receiver was not killed");
    }
}

//! The verified receive: moving a decoded backup stream into `zfs receive` so that the receiver
//! commits only a stream that arrived whole and matches its seal, and a stop request is never
//! ignored, even by a receiver that stopped reading.

use anyhow::{Context, Result, anyhow, bail};
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

/// Moves a stream into `zfs receive`, finishing it only when the whole stream arrived intact.
///
/// The last [`HOLD_BACK`] bytes are held back until the stream ended and its BLAKE3 digest
/// equals `expected` (from the object's seal): a ZFS stream ends with its END record, so
/// `zfs receive` cannot commit a stream whose tail it has not seen. On a mismatch, a read error
/// (download or decoder failure) or an interrupt the sink is dropped, which kills `zfs receive`
/// so it commits nothing. A write error means the receiver died: its own exit status and stderr
/// say why.
pub(crate) async fn pump(
    mut reader: BoxedReader,
    mut sink: z3_zfs::ReceiveSink,
    interrupt: &Interrupt,
    expected: Option<&Digest>,
    key: &str,
) -> Result<u64> {
    let mut pending: Vec<u8> = Vec::with_capacity(RELEASE_AT + PUMP_BUFFER);
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        pending.reserve(PUMP_BUFFER);
        let read = tokio::select! {
            biased;
            () = interrupt.cancelled() => {
                drop(sink);
                bail!("stopped after {total} bytes: zfs receive was killed before it committed anything");
            }
            read = reader.read_buf(&mut pending) => read,
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                drop(sink);
                return Err(anyhow!(err)).context("reading the backup stream failed");
            }
        };
        hasher.update(&pending[pending.len() - n..]);
        total += n as u64;
        if pending.len() >= RELEASE_AT {
            let release = pending.len() - HOLD_BACK;
            sink = write_or_explain(sink, &pending[..release], interrupt).await?;
            pending.drain(..release);
        }
    }
    if let Some(expected) = expected {
        let actual = Digest {
            len: total,
            blake3: *hasher.finalize().as_bytes(),
        };
        if actual != *expected {
            drop(sink);
            return Err(DigestMismatch {
                key: key.to_owned(),
                what: "the zfs stream",
                expected: *expected,
                actual,
            })
            .context("zfs receive was killed before it saw the end of the stream");
        }
    }
    let sink = write_or_explain(sink, &pending, interrupt).await?;
    finish_or_kill(sink, interrupt).await?;
    Ok(total)
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
mod pump_tests {
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
    fn stalled_sink() -> (
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
            pump(stream, sink, &interrupt, None, "k"),
        )
        .await
        .expect("the pump ignored the interrupt while the receiver was not reading");
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("was not reading its input"), "{err}");
        assert!(killed.load(Ordering::SeqCst), "the receiver was not killed");
    }
}

//! In-process codecs: zstd (multi-threaded) and gzip, on async-compression.
//!
//! No program has to be installed, nothing is spawned, and the bytes never cross a pipe. gzip
//! decoding also reads what `pigz` wrote, so objects of the original z3 (`pigz1`, `pigz4`)
//! restore without pigz.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_compression::Level;
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream, ReadBuf,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind};
use crate::{BoxedReader, Codec};

/// How much input an in-process codec reads at a time.
const INPUT_BUFFER: usize = 1 << 20;
/// Compressed bytes buffered between an encoder task and its reader.
const OUTPUT_BUFFER: usize = 1 << 20;

/// A codec that runs inside the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InProcessCodec {
    /// zstd at `level` (1–19; negative levels are faster still), with `threads` compression
    /// threads besides the caller's (0: compress on the caller's task).
    ZstdEncode {
        /// Compression level.
        level: i32,
        /// zstd worker threads.
        threads: u32,
    },
    /// zstd decompression (one or more concatenated frames, as `zstd -d` reads them).
    ZstdDecode,
    /// gzip at `level` (1–9).
    GzipEncode {
        /// Compression level.
        level: u32,
    },
    /// gzip decompression (one or more members, as `gzip -d` and `pigz -d` read them).
    GzipDecode,
}

impl InProcessCodec {
    fn format(self) -> &'static str {
        match self {
            Self::ZstdEncode { .. } | Self::ZstdDecode => "zstd",
            Self::GzipEncode { .. } | Self::GzipDecode => "gzip",
        }
    }
}

impl Codec for InProcessCodec {
    fn name(&self) -> &str {
        self.format()
    }

    fn describe(&self) -> String {
        match *self {
            Self::ZstdEncode { level, threads } => {
                format!("zstd -{level} -T{} (in-process)", threads.max(1))
            }
            Self::GzipEncode { level } => format!("gzip -{level} (in-process)"),
            Self::ZstdDecode | Self::GzipDecode => format!("{} -d (in-process)", self.format()),
        }
    }

    fn apply(&self, input: BoxedReader) -> Result<BoxedReader, Error> {
        match *self {
            Self::ZstdEncode { level, threads } => {
                encode_in_task(input, self.describe(), move |sink| {
                    // Frames carry a checksum of their content (as the `zstd` program writes them),
                    // so a flipped byte fails the restore instead of reaching `zfs receive`.
                    let mut params = vec![CParameter::checksum_flag(true)];
                    if threads > 0 {
                        params.push(CParameter::nb_workers(threads));
                    }
                    ZstdEncoder::with_quality_and_params(sink, Level::Precise(level), &params)
                })
            }
            Self::GzipEncode { level } => encode_in_task(input, self.describe(), move |sink| {
                GzipEncoder::with_quality(sink, Level::Precise(i32::try_from(level).unwrap_or(6)))
            }),
            Self::ZstdDecode | Self::GzipDecode => Ok(self.decode(input)),
        }
    }
}

impl InProcessCodec {
    fn decode(self, input: BoxedReader) -> BoxedReader {
        let input_failed = Arc::new(AtomicBool::new(false));
        let input = BufReader::with_capacity(
            INPUT_BUFFER,
            InputTap {
                inner: input,
                failed: Arc::clone(&input_failed),
            },
        );
        let inner: BoxedReader = if self == Self::ZstdDecode {
            let mut decoder = ZstdDecoder::new(input);
            decoder.multiple_members(true);
            Box::new(decoder)
        } else {
            let mut decoder = GzipDecoder::new(input);
            decoder.multiple_members(true);
            Box::new(decoder)
        };
        Box::new(Checked {
            inner,
            codec: self.describe(),
            input_failed,
        })
    }
}

/// Runs an encoder on a task of its own, fed by `input`, and returns its output.
///
/// Not async-compression's `bufread` encoders: they flush whenever the input is not ready yet,
/// and a zstd flush waits for every worker thread, which made multi-threaded zstd run on one
/// core. Here the encoder is only flushed at the end of the input.
fn encode_in_task<E, F>(input: BoxedReader, codec: String, make: F) -> Result<BoxedReader, Error>
where
    E: AsyncWrite + Send + Unpin + 'static,
    F: FnOnce(DuplexStream) -> E,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        let reason = io::Error::other("no Tokio runtime: codecs must be applied from within one");
        return Err(Error::command(ErrorKind::Spawn, &codec, Some(reason)));
    };
    let (sink, output) = tokio::io::duplex(OUTPUT_BUFFER);
    let (done, verdict) = oneshot::channel();
    let mut encoder = make(sink);
    let task_codec = codec.clone();
    let task = runtime.spawn(async move {
        let result = pump(input, &mut encoder, &task_codec).await;
        let _ = done.send(result);
    });
    Ok(Box::new(TaskOutput {
        output,
        verdict: Some(verdict),
        task,
        codec,
    }))
}

/// Copies `input` into `encoder` and finishes it; input errors become [`ErrorKind::Input`]
/// (or stay the upstream codec's error), encoder errors [`ErrorKind::Io`].
async fn pump<E: AsyncWrite + Unpin>(
    mut input: BoxedReader,
    encoder: &mut E,
    codec: &str,
) -> io::Result<()> {
    let mut buf = vec![0; INPUT_BUFFER];
    let failed = |kind, err| classify(kind, codec, err);
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(failed(ErrorKind::Input, err)),
        };
        encoder
            .write_all(&buf[..n])
            .await
            .map_err(|err| failed(ErrorKind::Io, err))?;
    }
    encoder
        .shutdown()
        .await
        .map_err(|err| failed(ErrorKind::Io, err))
}

/// The reading end of [`encode_in_task`]: reports end-of-file only once the task says the
/// encoder finished; a failure in the task is the read's error. Dropping it stops the task.
struct TaskOutput {
    output: DuplexStream,
    verdict: Option<oneshot::Receiver<io::Result<()>>>,
    task: JoinHandle<()>,
    codec: String,
}

impl Drop for TaskOutput {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AsyncRead for TaskOutput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.output).poll_read(cx, buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Ready(Ok(())) if buf.filled().len() > before => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => {}
        }
        // The encoder's end closed: EOF only if the task finished the stream.
        let Some(verdict) = self.verdict.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = match Pin::new(verdict).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(result)) => result,
            Poll::Ready(Err(_)) => Err(Error::command(
                ErrorKind::Io,
                &self.codec,
                Some(io::Error::other("the encoder task stopped")),
            )
            .into()),
        };
        self.verdict = None;
        if result.is_err() {
            // Later reads must not look like a clean end either.
            self.verdict = Some(oneshot::channel().1);
        }
        Poll::Ready(result)
    }
}

/// Notes whether the input itself failed, so that [`Checked`] can tell a broken input from
/// data the codec cannot read.
pub(crate) struct InputTap {
    inner: BoxedReader,
    failed: Arc<AtomicBool>,
}

impl InputTap {
    pub(crate) fn new(inner: BoxedReader, failed: Arc<AtomicBool>) -> Self {
        Self { inner, failed }
    }
}

impl AsyncRead for InputTap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(_)) = &poll {
            self.failed.store(true, Ordering::Relaxed);
        }
        poll
    }
}

/// A decoder's output, with its errors classified by [`classify`]: an input failure is
/// [`ErrorKind::Input`]; anything else means the data could not be decoded
/// ([`ErrorKind::Corrupt`]), including input that ends in the middle of a frame.
struct Checked {
    inner: BoxedReader,
    codec: String,
    input_failed: Arc<AtomicBool>,
}

impl AsyncRead for Checked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(err)) => {
                // async-compression may fill part of `buf` before it reports the error; a reader
                // that fails must not hand out data in the same call.
                buf.set_filled(before);
                let kind = if self.input_failed.load(Ordering::Relaxed) {
                    ErrorKind::Input
                } else {
                    ErrorKind::Corrupt
                };
                Poll::Ready(Err(classify(kind, &self.codec, err)))
            }
            other => other,
        }
    }
}

/// `err` as a codec error of `kind` about `codec`, unless it already is a codec error (an
/// upstream stage's), which passes through unchanged.
pub(crate) fn classify(kind: ErrorKind, codec: &str, err: io::Error) -> io::Error {
    if Error::downcast_io(&err).is_some() {
        err
    } else {
        Error::command(kind, codec, Some(err)).into()
    }
}

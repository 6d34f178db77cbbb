//! In-process codecs: zstd (multi-threaded) and gzip, on async-compression.
//!
//! No program has to be installed, nothing is spawned, and the bytes never cross a pipe. gzip
//! decoding also reads what `pigz` wrote, so objects of the original z3 (`pigz1`, `pigz4`)
//! restore without pigz.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_compression::Level;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use tokio::io::{AsyncRead, BufReader, ReadBuf};

use crate::error::{Error, ErrorKind};
use crate::{BoxedReader, Codec};

/// How much input an in-process codec reads at a time.
const INPUT_BUFFER: usize = 1 << 20;

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
        let input_failed = Arc::new(AtomicBool::new(false));
        let input = BufReader::with_capacity(
            INPUT_BUFFER,
            InputTap {
                inner: input,
                failed: Arc::clone(&input_failed),
            },
        );
        let inner: BoxedReader = match *self {
            Self::ZstdEncode { level, threads } => {
                // Frames carry a checksum of their content (as the `zstd` program writes them),
                // so a flipped byte fails the restore instead of reaching `zfs receive`.
                let mut params = vec![CParameter::checksum_flag(true)];
                if threads > 0 {
                    params.push(CParameter::nb_workers(threads));
                }
                Box::new(ZstdEncoder::with_quality_and_params(
                    input,
                    Level::Precise(level),
                    &params,
                ))
            }
            Self::ZstdDecode => {
                let mut decoder = ZstdDecoder::new(input);
                decoder.multiple_members(true);
                Box::new(decoder)
            }
            Self::GzipEncode { level } => Box::new(GzipEncoder::with_quality(
                input,
                Level::Precise(i32::try_from(level).unwrap_or(6)),
            )),
            Self::GzipDecode => {
                let mut decoder = GzipDecoder::new(input);
                decoder.multiple_members(true);
                Box::new(decoder)
            }
        };
        Ok(Box::new(Checked {
            inner,
            codec: self.describe(),
            input_failed,
        }))
    }
}

/// Notes whether the input itself failed, so that [`Checked`] can tell a broken input from
/// data the codec cannot read.
struct InputTap {
    inner: BoxedReader,
    failed: Arc<AtomicBool>,
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

/// The codec's output, with its errors classified: an input failure passes through as it was
/// (wrapped as [`ErrorKind::Input`] unless it already is a codec error); anything else means
/// the data could not be encoded or decoded ([`ErrorKind::Corrupt`]), including input that
/// ends in the middle of a frame.
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
                if Error::downcast_io(&err).is_some() {
                    return Poll::Ready(Err(err));
                }
                let kind = if self.input_failed.load(Ordering::Relaxed) {
                    ErrorKind::Input
                } else {
                    ErrorKind::Corrupt
                };
                Poll::Ready(Err(Error::command(kind, &self.codec, Some(err)).into()))
            }
            other => other,
        }
    }
}

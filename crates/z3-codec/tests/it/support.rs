//! Helpers shared by the integration tests: input readers with chosen chunking or failures, and runners.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use z3_codec::{BoxedReader, Codec, Error, ErrorKind};

/// Whether `program` is an executable on `PATH`.
pub(crate) fn have(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join(program)
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Returns `true` (after saying so) when `program` is missing and the calling test should return.
pub(crate) fn skip_without(program: &str) -> bool {
    let missing = !have(program);
    if missing {
        eprintln!("skipping: `{program}` is not installed");
    }
    missing
}

/// Deterministic test data of `len` bytes: runs of text mixed with pseudo-random bytes, so it compresses
/// somewhat but not trivially.
pub(crate) fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(3) {
            out.extend_from_slice(&state.to_le_bytes());
        } else {
            out.extend_from_slice(b"zfs send stream of tank/data@snap ");
        }
    }
    out.truncate(len);
    out
}

/// Boxes an in-memory input.
pub(crate) fn input(data: Vec<u8>) -> BoxedReader {
    Box::new(io::Cursor::new(data))
}

/// Reads a codec output to its end.
pub(crate) async fn read_all(mut output: BoxedReader) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    output.read_to_end(&mut out).await?;
    Ok(out)
}

/// Reads `output` to its end `read_size` bytes at a time, as a consumer with a small buffer would.
pub(crate) async fn read_in_steps(mut output: BoxedReader, read_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0; read_size];
    loop {
        let n = output.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Applies `codec` to `data` and reads the result.
pub(crate) async fn run(codec: &dyn Codec, data: Vec<u8>) -> io::Result<Vec<u8>> {
    read_all(codec.apply(input(data)).unwrap()).await
}

/// Encodes then decodes `data` as one pipeline, the way backup and restore chain stages.
pub(crate) async fn round_trip(
    encoder: &dyn Codec,
    decoder: &dyn Codec,
    data: Vec<u8>,
) -> io::Result<Vec<u8>> {
    let stage_one = encoder.apply(input(data)).unwrap();
    read_all(decoder.apply(stage_one).unwrap()).await
}

/// The codec error inside an output stream's `io::Error`; fails the test if there is none.
pub(crate) fn codec_error(err: &io::Error) -> &Error {
    assert_eq!(err.kind(), io::ErrorKind::Other, "{err}");
    Error::downcast_io(err).unwrap_or_else(|| panic!("not a z3_codec::Error: {err:?}"))
}

/// The fields of an [`ErrorKind::Failed`]; fails the test for any other kind.
pub(crate) fn failed(err: &Error) -> (&str, std::process::ExitStatus, &str) {
    match err.kind() {
        ErrorKind::Failed {
            command,
            status,
            stderr,
        } => (command, *status, stderr),
        other => panic!("expected ErrorKind::Failed, got {other:?}: {err}"),
    }
}

/// An input that hands out `data` in chunks of the given sizes (cycled) and, where `pending` says so, first
/// returns `Pending` once, the way a network or pipe source does.
pub(crate) struct ChunkedReader {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    pending: Vec<bool>,
    step: usize,
    woken: bool,
}

impl ChunkedReader {
    pub(crate) fn new(data: Vec<u8>, sizes: Vec<usize>, pending: Vec<bool>) -> Self {
        assert!(sizes.iter().all(|&size| size > 0) && !sizes.is_empty());
        Self {
            data,
            pos: 0,
            sizes,
            pending,
            step: 0,
            woken: false,
        }
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let pend = !this.pending.is_empty() && this.pending[this.step % this.pending.len()];
        if pend && !this.woken {
            this.woken = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.woken = false;
        let size = this.sizes[this.step % this.sizes.len()];
        this.step += 1;
        let end = this.data.len().min(this.pos + size.min(buf.remaining()));
        buf.put_slice(&this.data[this.pos..end]);
        this.pos = end;
        Poll::Ready(Ok(()))
    }
}

/// An input that yields `data` and then fails instead of reaching EOF.
pub(crate) struct FailingReader {
    data: io::Cursor<Vec<u8>>,
}

impl FailingReader {
    pub(crate) fn new(data: Vec<u8>) -> Self {
        Self {
            data: io::Cursor::new(data),
        }
    }
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.data).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            return Poll::Ready(Err(io::Error::other("disk on fire")));
        }
        poll
    }
}

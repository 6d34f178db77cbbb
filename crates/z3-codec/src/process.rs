//! Running a filter program: feeding its stdin, draining its stderr, and an output stream that reports EOF only
//! after the input was consumed and the program exited successfully.
//!
//! One supervisor task per program owns the child. It feeds the input, waits for the exit and collects stderr,
//! and resolves to `Ok(())` or the typed error. The output stream ([`Output`]) reads the child's stdout and, at
//! EOF, waits for that result before it reports EOF or the error. Aborting the task (which dropping the stream
//! does) drops the child, and `kill_on_drop` then kills it.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::BoxedReader;
use crate::error::{Error, ErrorKind};

/// Size of the buffer between the input and the child's stdin; the same as a Linux pipe buffer.
const FEED_BUFFER: usize = 64 * 1024;
/// How much of the end of stderr is kept for the error message.
const STDERR_KEEP: usize = 8 * 1024;

/// Environment variables no codec program inherits: S3 credentials and z3's key settings.
/// Compressors, `gpg` and `age` need none of them; a program that dumps or logs its environment
/// must not find them. (`z3_zfs::CHILD_ENV_REMOVED` is the same list; z3-cli checks that.)
pub const CHILD_ENV_REMOVED: &[&str] = &[
    "S3_SECRET",
    "S3_KEY_ID",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AGE_RECIPIENTS",
    "AGE_RECIPIENTS_FILE",
    "AGE_IDENTITY_FILE",
    "AGE_PASSPHRASE_FILE",
    // Not a secret, but named like one: scrubbed with the keys rather than argued about.
    "SSE_KMS_KEY_ID",
];

/// Removes [`CHILD_ENV_REMOVED`] from what `command` passes on (the one place a codec
/// program's environment is built).
fn scrub(command: &mut Command) {
    for name in CHILD_ENV_REMOVED {
        command.env_remove(name);
    }
}

/// Starts `command` with piped stdio and returns its output stream.
pub(crate) fn spawn(
    mut command: Command,
    command_line: String,
    input: BoxedReader,
) -> Result<BoxedReader, Error> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        let reason = io::Error::other("no Tokio runtime: codecs must be applied from within one");
        return Err(Error::command(
            ErrorKind::Spawn,
            &command_line,
            Some(reason),
        ));
    };
    scrub(&mut command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|err| Error::command(ErrorKind::Spawn, &command_line, Some(err)))?;
    tracing::debug!(command = %command_line, pid = child.id(), "started codec program");
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let command: Arc<str> = command_line.into();
    let task = runtime.spawn(supervise(child, stdin, stderr, input, Arc::clone(&command)));
    Ok(Box::new(Output {
        stdout,
        state: State::Running(task),
        command,
    }))
}

/// Runs the child to completion and turns what happened into the stream's final result.
async fn supervise(
    mut child: Child,
    stdin: ChildStdin,
    stderr: ChildStderr,
    input: BoxedReader,
    command: Arc<str>,
) -> Result<(), Error> {
    // Draining stderr concurrently matters: a program blocked on a full stderr pipe would never exit.
    let (outcome, stderr) = tokio::join!(run(&mut child, stdin, input), read_tail(stderr));
    let fail = |kind, source| Err(Error::command(kind, &command, source));
    match outcome {
        Outcome::Exited(status) if status.success() => {
            tracing::debug!(command = %command, stderr, "codec program finished");
            Ok(())
        }
        Outcome::Exited(status) => {
            tracing::debug!(command = %command, %status, stderr, "codec program failed");
            let kind = ErrorKind::Failed {
                command: command.to_string(),
                status,
                stderr,
            };
            fail(kind, None)
        }
        Outcome::InputFailed(err) => fail(ErrorKind::Input, Some(err)),
        Outcome::Unconsumed => {
            let reason = io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the program exited successfully without reading all of its input",
            );
            fail(ErrorKind::Io, Some(reason))
        }
        Outcome::Io(err) => fail(ErrorKind::Io, Some(err)),
    }
}

/// How a run ended, before stderr is attached.
enum Outcome {
    /// All input was fed (or the program failed first) and the program exited with this status.
    Exited(ExitStatus),
    /// Reading the input failed; the program was killed.
    InputFailed(io::Error),
    /// The program exited successfully but closed its stdin while input remained.
    Unconsumed,
    /// Writing to the program or waiting for it failed; the program was killed.
    Io(io::Error),
}

/// Why feeding the input stopped early.
enum FeedError {
    /// Reading the input failed.
    Input(io::Error),
    /// Writing the child's stdin failed.
    Write(io::Error),
}

/// Which of feeding and the child's exit finished first.
enum First {
    Fed(Result<(), FeedError>),
    Exited(io::Result<ExitStatus>),
}

async fn run(child: &mut Child, stdin: ChildStdin, input: BoxedReader) -> Outcome {
    let mut feeding = pin!(feed(input, stdin));
    // Racing the feeder against the exit lets a program that fails early (gpg with an unknown recipient) be
    // reported at once, even while the feeder waits for more input.
    let first = tokio::select! {
        fed = &mut feeding => First::Fed(fed),
        status = child.wait() => First::Exited(status),
    };
    match first {
        First::Fed(Ok(())) => wait(child).await,
        First::Fed(Err(FeedError::Input(err))) => {
            // Closing stdin would look like a clean end of input (pigz would exit 0 on a truncated stream),
            // so the program is killed instead and the input's error is reported.
            kill(child).await;
            Outcome::InputFailed(err)
        }
        First::Fed(Err(FeedError::Write(err))) if err.kind() == io::ErrorKind::BrokenPipe => {
            // The program closed its stdin, usually by exiting: its status and stderr say why, the broken pipe
            // does not.
            match wait(child).await {
                Outcome::Exited(status) if status.success() => Outcome::Unconsumed,
                outcome => outcome,
            }
        }
        First::Exited(Ok(status)) if !status.success() => Outcome::Exited(status),
        // A successful exit still needs the rest of the input: a program that stops reading early must not make
        // a truncated transformation look complete.
        First::Exited(Ok(status)) => match feeding.await {
            Ok(()) => Outcome::Exited(status),
            Err(FeedError::Input(err)) => Outcome::InputFailed(err),
            Err(FeedError::Write(err)) if err.kind() == io::ErrorKind::BrokenPipe => {
                Outcome::Unconsumed
            }
            Err(FeedError::Write(err)) => Outcome::Io(err),
        },
        First::Fed(Err(FeedError::Write(err))) | First::Exited(Err(err)) => {
            kill(child).await;
            Outcome::Io(err)
        }
    }
}

async fn wait(child: &mut Child) -> Outcome {
    match child.wait().await {
        Ok(status) => Outcome::Exited(status),
        Err(err) => Outcome::Io(err),
    }
}

async fn kill(child: &mut Child) {
    // `kill` fails only if the child has already been reaped, which is the state wanted anyway.
    if let Err(err) = child.kill().await {
        tracing::debug!(%err, "killing codec program failed");
    }
}

/// Copies `input` to the child's stdin and closes it.
///
/// A loop rather than `tokio::io::copy`, because the caller must tell a failed input read from a failed write.
async fn feed(mut input: BoxedReader, mut stdin: ChildStdin) -> Result<(), FeedError> {
    let mut buf = vec![0; FEED_BUFFER];
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(FeedError::Input(err)),
        };
        stdin.write_all(&buf[..n]).await.map_err(FeedError::Write)?;
    }
    stdin.shutdown().await.map_err(FeedError::Write)
    // Dropping `stdin` closes the pipe: the program sees end of input.
}

/// Reads stderr to its end and returns the trimmed tail.
async fn read_tail(mut stderr: ChildStderr) -> String {
    let mut tail = Tail::default();
    let mut chunk = [0; 4096];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => tail.push(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::debug!(%err, "reading codec program stderr failed");
                break;
            }
        }
    }
    tail.finish()
}

/// The last [`STDERR_KEEP`] bytes of a stream, in a buffer of at most twice that.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * STDERR_KEEP {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if self.bytes.len() > STDERR_KEEP {
            self.bytes.drain(..self.bytes.len() - STDERR_KEEP);
            self.truncated = true;
        }
    }

    fn finish(mut self) -> String {
        self.cut();
        let text = String::from_utf8_lossy(&self.bytes);
        let text = text.trim();
        if self.truncated {
            format!("...{text}")
        } else {
            text.to_owned()
        }
    }
}

/// The output stream: the child's stdout, with EOF held back until the supervisor reports success.
struct Output {
    stdout: ChildStdout,
    state: State,
    command: Arc<str>,
}

enum State {
    /// The supervisor is still running.
    Running(JoinHandle<Result<(), Error>>),
    /// The supervisor succeeded; stdout may still hold data.
    Succeeded,
    /// EOF was reported.
    Eof,
    /// An error was reported.
    Failed,
}

impl Output {
    /// Polls the supervisor: `Ready(Ok)` once it has succeeded, `Ready(Err)` if it failed.
    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = match &mut self.state {
            State::Running(task) => match ready!(Pin::new(task).poll(cx)) {
                Ok(result) => result,
                Err(join_err) => Err(Error::command(
                    ErrorKind::Io,
                    &self.command,
                    Some(io::Error::other(join_err)),
                )),
            },
            State::Succeeded | State::Eof => return Poll::Ready(Ok(())),
            State::Failed => {
                let reason = io::Error::other("the output stream already failed");
                let err = Error::command(ErrorKind::Io, &self.command, Some(reason));
                return Poll::Ready(Err(err.into()));
            }
        };
        if let Err(err) = result {
            self.state = State::Failed;
            return Poll::Ready(Err(err.into()));
        }
        self.state = State::Succeeded;
        Poll::Ready(Ok(()))
    }

    fn abort(&mut self) {
        if let State::Running(task) = &self.state {
            task.abort();
        }
    }
}

impl AsyncRead for Output {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A failure ends the stream at once, even while the dying program's stdout still holds data.
        if let Poll::Ready(Err(err)) = this.poll_finished(cx) {
            return Poll::Ready(Err(err));
        }
        if matches!(this.state, State::Eof) || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        if let Err(err) = ready!(Pin::new(&mut this.stdout).poll_read(cx, buf)) {
            this.abort();
            this.state = State::Failed;
            return Poll::Ready(Err(
                Error::command(ErrorKind::Io, &this.command, Some(err)).into()
            ));
        }
        if buf.filled().len() > before {
            return Poll::Ready(Ok(()));
        }
        // End of stdout: EOF is reported only when the input was consumed and the program exited successfully.
        ready!(this.poll_finished(cx))?;
        this.state = State::Eof;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Aborting drops the supervisor's future, and with it the child, which `kill_on_drop` kills.
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_programs_get_no_secret_from_the_environment() {
        let mut command = Command::new("zstd");
        command.env("KEEP", "1");
        scrub(&mut command);
        let mut removed: Vec<String> = command
            .as_std()
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        removed.sort_unstable();
        let mut expected: Vec<&str> = CHILD_ENV_REMOVED.to_vec();
        expected.sort_unstable();
        assert_eq!(removed, expected);
        assert!(CHILD_ENV_REMOVED.contains(&"AWS_SECRET_ACCESS_KEY"));
    }

    #[test]
    fn tail_keeps_short_output_whole_and_trimmed() {
        let mut tail = Tail::default();
        tail.push(b"  pigz: skipping: ");
        tail.push(b"<stdin> unrecognized format\n");
        assert_eq!(tail.finish(), "pigz: skipping: <stdin> unrecognized format");
    }

    #[test]
    fn tail_keeps_only_the_end_of_long_output() {
        let mut tail = Tail::default();
        for _ in 0..100 {
            tail.push(&[b'x'; 1000]);
        }
        tail.push(b"the real error");
        assert!(tail.bytes.len() <= 2 * STDERR_KEEP);
        let text = tail.finish();
        assert!(text.starts_with("...x"));
        assert!(text.ends_with("xthe real error"));
        assert_eq!(text.len(), 3 + STDERR_KEEP);
    }

    #[test]
    fn tail_of_nothing_is_empty() {
        assert_eq!(Tail::default().finish(), "");
        let mut tail = Tail::default();
        tail.push(b"\n\n");
        assert_eq!(tail.finish(), "");
    }
}

//! Runs a program with an argument vector: captured commands, streaming producers and
//! streaming consumers. Never through a shell.
//!
//! Every process runs with `LC_ALL=C`, because `zfs` messages go through gettext and older
//! versions printed numbers with the locale's decimal separator. stderr is always drained by
//! a concurrent task into a bounded tail buffer: a child blocked on a full stderr pipe would
//! otherwise never close stdout, and the reader would wait forever (ripgrep `process.rs`).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::error::{CommandFailure, Error, ErrorKind, STDERR_LIMIT, Subject};
use crate::ssh::{SshTarget, shell_quote};
use crate::stream::{ReceiveSink, SendStream};

/// Environment variables no `zfs`, `ssh` or `sudo` inherits: S3 credentials and z3's key
/// settings. (`z3_codec::CHILD_ENV_REMOVED` is the same list; z3-cli checks that.)
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

/// A program and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    program: PathBuf,
    args: Vec<String>,
    subject: Subject,
    /// Run on another host through ssh instead of here.
    via: Option<std::sync::Arc<SshTarget>>,
}

/// The outcome of a captured command.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Captured {
    /// The exit code, `None` when killed by a signal.
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Invocation {
    /// `program args…`; `subject` classifies "does not exist" errors.
    pub(crate) fn new(program: &Path, args: Vec<String>, subject: Subject) -> Self {
        Self {
            program: program.to_owned(),
            args,
            subject,
            via: None,
        }
    }

    /// Runs the same command on another host, through `ssh`.
    pub(crate) fn via(mut self, target: Option<std::sync::Arc<SshTarget>>) -> Self {
        self.via = target;
        self
    }

    /// The local program and arguments: the command itself, or `ssh … 'command'`.
    fn argv(&self) -> (PathBuf, Vec<String>) {
        match &self.via {
            None => (self.program.clone(), self.args.clone()),
            Some(target) => (
                target.program.clone(),
                target.args(&self.program.to_string_lossy(), &self.args),
            ),
        }
    }

    /// The command line for humans, each word shell-quoted when needed.
    pub(crate) fn display(&self) -> String {
        let (program, args) = self.argv();
        let program = program.to_string_lossy();
        std::iter::once(shell_quote(&program))
            .chain(args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The one place a child's environment is built (`zfs`, `ssh`, `sudo` alike): `LC_ALL=C`,
    /// and none of [`CHILD_ENV_REMOVED`].
    fn command(&self) -> Command {
        let (program, args) = self.argv();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("LC_ALL", "C")
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for name in CHILD_ENV_REMOVED {
            cmd.env_remove(name);
        }
        cmd
    }

    fn spawn(&self, mut cmd: Command) -> Result<Child, Error> {
        cmd.spawn().map_err(|e| {
            let message = match &self.via {
                // ssh or sudo did not start: the zfs hints do not apply.
                Some(_) => format!("cannot run `{}`", self.display()),
                None => spawn_message(&self.display(), &self.program.to_string_lossy(), &e),
            };
            Error::new(ErrorKind::Spawn, message).with_source(e)
        })
    }

    /// The error for a process that ended with `status` and printed `stderr`.
    pub(crate) fn failure(&self, status: ExitStatus, stderr: String) -> Error {
        Error::from_failure(
            CommandFailure {
                command: self.display(),
                code: status.code(),
                status: status.to_string(),
                stderr,
            },
            self.subject,
        )
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, format!("{what} `{}`", self.display())).with_source(e)
    }

    /// Runs to completion with stdin null, capturing stdout fully and the tail of stderr.
    /// A non-zero exit is not an error here: callers inspect it to detect dialects.
    pub(crate) async fn capture(&self) -> Result<Captured, Error> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = self.spawn(cmd)?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let read_stdout = async {
            let mut buf = Vec::new();
            if let Some(mut out) = stdout {
                out.read_to_end(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        };
        let (stdout, stderr) = tokio::join!(read_stdout, drain_tail(stderr));
        let stdout = stdout.map_err(|e| self.io_error("cannot read the output of", e))?;
        let status = child
            .wait()
            .await
            .map_err(|e| self.io_error("cannot wait for", e))?;
        tracing::debug!(command = %self.display(), %status, "zfs command finished");
        Ok(Captured {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        })
    }

    /// Runs to completion; a non-zero exit becomes an error.
    pub(crate) async fn run(&self) -> Result<Captured, Error> {
        let captured = self.capture().await?;
        if captured.status.success() {
            Ok(captured)
        } else {
            Err(self.failure(captured.status, captured.stderr))
        }
    }

    /// Starts a producer whose stdout is the stream (`zfs send`).
    pub(crate) fn stream_from(&self) -> Result<SendStream, Error> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = self.spawn(cmd)?;
        let Some(stdout) = child.stdout.take() else {
            return Err(Error::new(
                ErrorKind::Io,
                format!("no stdout pipe for `{}`", self.display()),
            ));
        };
        grow_pipe(&stdout);
        let stderr_task = spawn_drain(child.stderr.take());
        let this = self.clone();
        let completion = async move { this.wait(child, stderr_task).await };
        Ok(SendStream::from_parts(stdout, completion, self.display()))
    }

    /// Starts a consumer whose stdin is the stream (`zfs receive`).
    pub(crate) fn stream_into(&self) -> Result<ReceiveSink, Error> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = self.spawn(cmd)?;
        let Some(stdin) = child.stdin.take() else {
            return Err(Error::new(
                ErrorKind::Io,
                format!("no stdin pipe for `{}`", self.display()),
            ));
        };
        grow_pipe(&stdin);
        // stdout is drained too (and discarded): `zfs receive -v` would print to it.
        let stdout_task = spawn_drain(child.stdout.take());
        let stderr_task = spawn_drain(child.stderr.take());
        let this = self.clone();
        let completion = async move {
            let result = this.wait(child, stderr_task).await;
            let _ = stdout_task.await;
            result
        };
        Ok(ReceiveSink::from_parts(stdin, completion, self.display()))
    }

    async fn wait(&self, mut child: Child, stderr: JoinHandle<String>) -> Result<(), Error> {
        let status = child
            .wait()
            .await
            .map_err(|e| self.io_error("cannot wait for", e))?;
        // The pipe closes when the process (and any child holding it) exits.
        let stderr = stderr.await.unwrap_or_default();
        tracing::debug!(command = %self.display(), %status, "zfs stream finished");
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(status, stderr))
        }
    }
}

fn spawn_drain(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> JoinHandle<String> {
    tokio::spawn(drain_tail(pipe))
}

/// Reads `pipe` to EOF, keeping only the last [`STDERR_LIMIT`] bytes, decoded lossily and
/// trimmed. A leading `…` marks a cut. Read errors end the drain quietly: stderr is advisory.
async fn drain_tail(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut tail: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut chunk = vec![0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                // Trim in batches so that a flood costs amortised O(1) per byte.
                if tail.len() > 2 * STDERR_LIMIT {
                    tail.drain(..tail.len() - STDERR_LIMIT);
                    cut = true;
                }
            }
        }
    }
    if tail.len() > STDERR_LIMIT {
        tail.drain(..tail.len() - STDERR_LIMIT);
        cut = true;
    }
    let text = String::from_utf8_lossy(&tail);
    let text = text.trim();
    if cut {
        format!("…{text}")
    } else {
        text.to_owned()
    }
}

/// Raises a stream pipe's kernel buffer from 64 KiB to 1 MiB (the unprivileged limit), so
/// `zfs send`/`zfs receive` and z3 exchange 16× fewer wake-ups at hundreds of MiB/s. A refusal
/// only costs speed, so it is logged at debug level and otherwise ignored.
fn grow_pipe(fd: &impl std::os::fd::AsFd) {
    if let Err(err) = rustix::pipe::fcntl_setpipe_size(fd, 1 << 20) {
        tracing::debug!(error = %err, "pipe buffer left at its size");
    }
}

/// Why `program` could not be started, and what to do: the message of [`ErrorKind::Spawn`].
fn spawn_message(command: &str, program: &str, err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => format!(
            "cannot run `{command}`: `{program}` not found: install ZFS (e.g. zfsutils-linux), \
             or set ZFS_COMMAND to the zfs program's path"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot run `{command}`: `{program}` is not executable by this user: run z3 as root, \
             or fix ZFS_COMMAND"
        ),
        _ => format!("cannot run `{command}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn sh(script: &str, extra: &[&str]) -> Invocation {
        let mut args = vec!["-c".to_owned(), script.to_owned(), "sh".to_owned()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Invocation::new(Path::new("/bin/sh"), args, Subject::Snapshot)
    }

    #[test]
    fn children_get_no_secret_from_the_environment() {
        let removed = |inv: &Invocation| -> Vec<String> {
            inv.command()
                .as_std()
                .get_envs()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| name.to_string_lossy().into_owned())
                .collect()
        };
        let local = Invocation::new(Path::new("zfs"), vec!["list".into()], Subject::Dataset);
        let target = SshTarget::new("root@backup-host").unwrap();
        let remote = local.clone().via(Some(std::sync::Arc::new(target)));
        for inv in [&local, &remote] {
            let mut removed = removed(inv);
            removed.sort();
            let mut expected: Vec<String> =
                CHILD_ENV_REMOVED.iter().map(|s| (*s).to_owned()).collect();
            expected.sort();
            assert_eq!(removed, expected, "{}", inv.display());
        }
        assert!(CHILD_ENV_REMOVED.contains(&"S3_SECRET"));
        assert!(CHILD_ENV_REMOVED.contains(&"AWS_SESSION_TOKEN"));
    }

    #[test]
    fn quoting_for_display() {
        let inv = Invocation::new(
            Path::new("zfs"),
            vec![
                "send".into(),
                "-i".into(),
                "p/a b@x".into(),
                "p/a b@y".into(),
            ],
            Subject::Snapshot,
        );
        assert_eq!(inv.display(), "zfs send -i 'p/a b@x' 'p/a b@y'");
    }

    #[tokio::test]
    async fn stream_does_not_deadlock_on_large_stderr() {
        // 2 MiB to stderr before anything on stdout: a runner that only read stdout would hang.
        let inv = sh("head -c 2097152 /dev/zero | tr '\\0' e >&2; echo done", &[]);
        let mut stream = inv.stream_from().unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut out))
            .await
            .expect("deadlocked")
            .unwrap();
        assert_eq!(out, "done\n");
    }

    #[tokio::test]
    async fn capture_does_not_deadlock_and_bounds_stderr() {
        let inv = sh(
            "head -c 1100000 /dev/zero | tr '\\0' e >&2; echo last words >&2; exit 3",
            &[],
        );
        let e = tokio::time::timeout(Duration::from_secs(30), inv.run())
            .await
            .expect("deadlocked")
            .unwrap_err();
        let failure = e.command().unwrap();
        assert_eq!(failure.code, Some(3));
        assert!(failure.stderr.starts_with('…'));
        assert!(
            failure.stderr.ends_with("eeelast words"),
            "{}",
            &failure.stderr[..40]
        );
        assert!(failure.stderr.len() <= STDERR_LIMIT + '…'.len_utf8());
    }

    #[tokio::test]
    async fn stream_failure_after_all_bytes_carries_status_and_stderr() {
        let inv = sh(
            "echo payload; echo 'cannot send: it broke' >&2; exit 1",
            &[],
        );
        let mut stream = inv.stream_from().unwrap();
        let mut out = Vec::new();
        let e = stream.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(out, b"payload\n");
        let e = Error::from_io(e, "reading");
        assert_eq!(e.kind(), ErrorKind::CommandFailed);
        let failure = e.command().unwrap();
        assert_eq!(failure.code, Some(1));
        assert_eq!(failure.stderr, "cannot send: it broke");
        assert!(
            failure.command.starts_with("/bin/sh -c "),
            "{}",
            failure.command
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let inv = Invocation::new(
            Path::new("/nonexistent/z3-no-such-zfs"),
            vec!["list".into()],
            Subject::Dataset,
        );
        assert_eq!(inv.run().await.unwrap_err().kind(), ErrorKind::Spawn);
        assert_eq!(inv.stream_from().unwrap_err().kind(), ErrorKind::Spawn);
        assert_eq!(inv.stream_into().unwrap_err().kind(), ErrorKind::Spawn);
        // Issue 15, point 5: the one line names the missing program and the fix.
        let line = inv.run().await.unwrap_err().to_string();
        assert_eq!(
            line,
            "cannot run `/nonexistent/z3-no-such-zfs list`: `/nonexistent/z3-no-such-zfs` not \
             found: install ZFS (e.g. zfsutils-linux), or set ZFS_COMMAND to the zfs program's path"
        );
    }

    #[tokio::test]
    async fn sink_success_and_failure() {
        let ok = sh("cat >/dev/null", &[]);
        let mut sink = ok.stream_into().unwrap();
        sink.write_all(&vec![7u8; 1 << 20]).await.unwrap();
        sink.finish().await.unwrap();

        // The receiver reads a little, complains and dies: writes fail, finish explains why.
        let bad = sh(
            "head -c 10 >/dev/null; echo 'cannot receive: invalid stream (bad magic number)' >&2; exit 1",
            &[],
        );
        let mut sink = bad.stream_into().unwrap();
        let write = sink.write_all(&vec![7u8; 4 << 20]).await;
        assert_eq!(write.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        let e = sink.finish().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidStream);
        assert_eq!(
            e.stderr(),
            Some("cannot receive: invalid stream (bad magic number)")
        );
    }

    #[tokio::test]
    async fn dropping_the_sink_kills_the_receiver() {
        let marker = std::env::temp_dir().join(format!("z3-zfs-drop-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        // The receiver would write the marker after reading EOF; it must be killed first.
        let inv = sh(
            "cat >/dev/null; sleep 0.2; echo committed > \"$1\"",
            &[marker.to_str().unwrap()],
        );
        let mut sink = inv.stream_into().unwrap();
        sink.write_all(b"whole stream").await.unwrap();
        drop(sink);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!marker.exists(), "receiver survived the drop");

        // Control: the same receiver, finished properly, does write the marker.
        let mut sink = inv.stream_into().unwrap();
        sink.write_all(b"whole stream").await.unwrap();
        sink.finish().await.unwrap();
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
    }
}

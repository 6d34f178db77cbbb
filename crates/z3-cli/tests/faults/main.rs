//! Fault-injection suite: the real binaries (`pput`, `z3_get`, `z3 backup`, `z3 restore`) against
//! real zfs-fuse and SeaweedFS, with faults on the wire (a proxy of our own, [`proxy`]) and in
//! the processes around them ([`process`]).
//!
//! Every scenario asserts the same promise (docs/reliability.md): the result is byte-identical
//! to the source, or the command failed with a clear one-line message; no object claims to be a
//! backup it is not; no multipart upload is left open. Each one also asserts that its faults
//! fired, and prints how many it injected and how many objects it compared byte for byte.
//!
//! Gated like the end-to-end suite: without the `Z3_TEST_*` variables the tests skip, unless
//! `Z3_REQUIRE_INTEGRATION` is set.

#[path = "../it/support.rs"]
mod support;

mod process;
mod proxy;
mod wire;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use z3_s3::{AwsStore, ObjectStore};

use crate::support::{RealEnv, stderr};

/// A key prefix of its own for a test that needs no dataset.
fn prefix(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("faults-{}-{n}-{name}/", std::process::id())
}

/// `len` pseudo-random (incompressible) bytes.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `pput` or `z3_get` (`program`, from `env!("CARGO_BIN_EXE_…")`) configured through the
/// environment only, talking to `endpoint`.
fn plumbing(
    env: &RealEnv,
    program: &str,
    endpoint: &str,
    args: &[&str],
    extra: &[(&str, &str)],
) -> Command {
    let mut cmd = env.command(program);
    cmd.args(args).env("S3_ENDPOINT", endpoint);
    for (key, value) in extra {
        cmd.env(key, value);
    }
    cmd
}

/// `pput ARGS KEY` with `input` on standard input.
fn pput(env: &RealEnv, endpoint: &str, key: &str, input: &[u8], extra: &[(&str, &str)]) -> Output {
    let cmd = plumbing(
        env,
        env!("CARGO_BIN_EXE_pput"),
        endpoint,
        &["--quiet", key],
        extra,
    );
    run_with_input(cmd, input, "pput")
}

/// `z3_get -s 5M KEY`.
fn z3_get(env: &RealEnv, endpoint: &str, key: &str, extra: &[(&str, &str)]) -> Output {
    let cmd = plumbing(
        env,
        env!("CARGO_BIN_EXE_z3_get"),
        endpoint,
        &["--quiet", "-s", "5M", key],
        extra,
    );
    run_with_input(cmd, &[], "z3_get")
}

/// Runs `cmd` with `input` on standard input, killing it if it takes more than two minutes.
fn run_with_input(mut cmd: Command, input: &[u8], name: &str) -> Output {
    let mut child = Reaped(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let input = input.to_vec();
    // A writer thread, so a child that stops reading cannot block the test.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output(Duration::from_mins(2));
    let _ = writer.join();
    eprintln!(
        "$ {name} -> {:?}\n--- stderr\n{}",
        output.status.code(),
        stderr(&output)
    );
    output
}

/// A child process that is killed and reaped if the test fails before it is waited for.
#[derive(Debug)]
struct Reaped(std::process::Child);

impl Reaped {
    /// Waits up to `limit` (then the test fails, and the child is killed on drop).
    fn wait_with_output(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        let mut err = Vec::new();
        // Drain both pipes on threads so a chatty child cannot block on a full pipe.
        let stdout = self.0.stdout.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut pipe, &mut buf);
                buf
            })
        });
        let stderr = self.0.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut pipe, &mut buf);
                buf
            })
        });
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "child did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(thread) = stdout {
            out = thread.join().unwrap();
        }
        if let Some(thread) = stderr {
            err = thread.join().unwrap();
        }
        Output {
            status,
            stdout: out,
            stderr: err,
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The whole object `key`, read directly from the server.
async fn read_back(store: &AwsStore, key: &str) -> Vec<u8> {
    let info = store.head(key).await.unwrap();
    store.get_range(key, 0..info.size).await.unwrap().to_vec()
}

/// No object under `key`.
async fn assert_absent(store: &AwsStore, key: &str) {
    let head = store.head(key).await;
    assert!(
        head.as_ref()
            .is_err_and(|e| e.kind() == z3_s3::ErrorKind::NotFound),
        "{key}: {head:?}"
    );
}

/// The command failed with `code`, and the last line of stderr is the one error line
/// (`PROGRAM: error: …`) containing every piece of `expected`; earlier lines are warnings.
fn assert_clear_failure(output: &Output, program: &str, code: i32, expected: &[&str]) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("{program}: error: ")), "{err}");
    for piece in expected {
        assert!(last.contains(piece), "{piece:?} not in {last:?}");
    }
    let errors = err.lines().filter(|l| l.contains(": error: ")).count();
    assert_eq!(errors, 1, "{err}");
}

/// Prints a scenario's tally (collected from the test output for the suite's totals).
fn tally(scenario: &str, faults: usize, compared: usize) {
    eprintln!("faults tally: {scenario}: {faults} faults injected, {compared} objects compared");
}

//! Failures: every way a stage can go wrong must surface as a typed error, never as a clean end of stream.

use std::io;
use std::os::unix::process::ExitStatusExt;

use z3_codec::{BoxedReader, Codec, Compressor, Error, ErrorKind, ExternalCodec, decoder_for};

use crate::support::{FailingReader, codec_error, failed, read_all, run, sample, skip_without};

fn sh(script: &str) -> ExternalCodec {
    ExternalCodec::new("test", "sh", vec!["-c".into(), script.into()])
}

#[tokio::test]
async fn non_zero_exit_after_consuming_input_is_failed_with_status_and_stderr() {
    let codec = sh("cat >/dev/null; echo boom >&2; exit 3");
    let err = run(&codec, sample(100_000, 1)).await.unwrap_err();
    let err = codec_error(&err);
    let (command, status, stderr) = failed(err);
    assert_eq!(status.code(), Some(3));
    assert_eq!(stderr, "boom");
    assert_eq!(command, "sh -c 'cat >/dev/null; echo boom >&2; exit 3'");
    assert_eq!(err.command_line(), Some(command));
    assert_eq!(
        err.to_string(),
        "`sh -c 'cat >/dev/null; echo boom >&2; exit 3'` failed (exit status: 3): boom"
    );
}

/// The feeder hits a broken pipe when the program exits without reading; the program's own failure is the
/// error worth reporting. Repeated, because which side notices first is a race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_exit_without_reading_reports_the_child_not_the_broken_pipe() {
    let codec = sh("echo early >&2; exit 5");
    for len in [0, 10, 8 * 1024 * 1024] {
        for _ in 0..5 {
            let err = run(&codec, sample(len, 2)).await.unwrap_err();
            let (_, status, stderr) = failed(codec_error(&err));
            assert_eq!(status.code(), Some(5), "{len} bytes");
            assert_eq!(stderr, "early");
        }
    }
}

/// A program that exits 0 but leaves input unread has not transformed the whole stream.
#[tokio::test]
async fn successful_exit_with_unread_input_is_an_error() {
    let codec = ExternalCodec::new("true", "true", vec![]);
    let err = run(&codec, sample(8 * 1024 * 1024, 3)).await.unwrap_err();
    let err = codec_error(&err);
    assert_eq!(err.kind(), &ErrorKind::Io);
    let source = std::error::Error::source(err).unwrap().to_string();
    assert!(
        source.contains("without reading all of its input"),
        "{source}"
    );
}

#[tokio::test]
async fn crash_is_failed_with_the_signal() {
    let err = run(&sh("kill -9 $$"), Vec::new()).await.unwrap_err();
    let (_, status, _) = failed(codec_error(&err));
    assert_eq!(status.signal(), Some(9));
    assert!(codec_error(&err).to_string().contains("SIGKILL"), "{err}");
}

async fn check_input_failure(codec: &dyn Codec) {
    let data = sample(300_000, 4);
    let output = codec.apply(Box::new(FailingReader::new(data))).unwrap();
    let err = read_all(output).await.unwrap_err();
    let err = codec_error(&err);
    assert_eq!(err.kind(), &ErrorKind::Input, "{err}");
    assert_eq!(err.command_line(), Some(codec.describe().as_str()));
    assert_eq!(
        std::error::Error::source(err).unwrap().to_string(),
        "disk on fire"
    );
}

/// `cat` and `pigz` would both exit 0 if their stdin were simply closed: the truncated output must still fail.
#[tokio::test]
async fn failing_input_is_an_input_error_even_when_the_program_would_succeed() {
    check_input_failure(&ExternalCodec::new("identity", "cat", vec![])).await;
    if skip_without("pigz") {
        return;
    }
    check_input_failure(&Compressor::Pigz1.encoder().unwrap()).await;
}

/// A failed upstream stage reaches the next stage as an input error that still carries the upstream failure.
#[tokio::test]
async fn failure_of_an_upstream_stage_is_an_input_error_downstream() {
    let upstream = sh("cat >/dev/null; echo upstream broke >&2; exit 4");
    let downstream = ExternalCodec::new("identity", "cat", vec![]);
    let output = downstream
        .apply(
            upstream
                .apply(crate::support::input(sample(1000, 5)))
                .unwrap(),
        )
        .unwrap();
    let err = read_all(output).await.unwrap_err();
    let err = codec_error(&err);
    assert_eq!(err.kind(), &ErrorKind::Input);
    let source = std::error::Error::source(err).unwrap();
    let io_source = source.downcast_ref::<io::Error>().unwrap();
    let (_, status, stderr) = failed(Error::downcast_io(io_source).unwrap());
    assert_eq!((status.code(), stderr), (Some(4), "upstream broke"));
}

#[tokio::test]
async fn corrupt_gzip_fails_with_pigz_stderr() {
    if skip_without("pigz") {
        return;
    }
    // Restore decodes pigz output in-process now (tests/it/inproc.rs); the program path must still report
    // the program's own complaint.
    let decoder = ExternalCodec::new("pigz1", "pigz", vec!["-d".into()]);
    let err = run(&decoder, b"this is not gzip data at all".to_vec())
        .await
        .unwrap_err();
    let (command, status, stderr) = failed(codec_error(&err));
    assert_eq!(command, "pigz -d");
    assert!(!status.success());
    assert!(stderr.contains("pigz"), "{stderr}");

    // A stream cut short in the middle is just as corrupt.
    let mut encoded = run(&Compressor::Pigz1.encoder().unwrap(), sample(500_000, 6))
        .await
        .unwrap();
    encoded.truncate(encoded.len() / 2);
    let err = run(&decoder, encoded).await.unwrap_err();
    let (_, _, stderr) = failed(codec_error(&err));
    assert!(stderr.contains("pigz"), "{stderr}");
}

/// A program that writes much to stderr before reading stdin deadlocks unless stderr is drained concurrently.
#[tokio::test]
async fn chatty_stderr_does_not_block_and_only_its_tail_is_kept() {
    let chatty = "head -c 1000000 /dev/zero | tr '\\0' x >&2; cat";
    let data = sample(1_000_000, 8);
    assert!(run(&sh(chatty), data.clone()).await.unwrap() == data);

    let err = run(&sh(&format!("{chatty}; echo last words >&2; exit 1")), data)
        .await
        .unwrap_err();
    let (_, _, stderr) = failed(codec_error(&err));
    assert!(
        stderr.ends_with("xlast words"),
        "{}",
        &stderr[stderr.len() - 20..]
    );
    assert!(
        stderr.len() <= 8 * 1024 + 3,
        "kept {} bytes of stderr",
        stderr.len()
    );
}

#[tokio::test]
async fn missing_program_is_program_not_found() {
    let codec = ExternalCodec::new("nope", "z3-codec-test-no-such-program", vec![]);
    let err = codec
        .apply(crate::support::input(Vec::new()))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::ProgramNotFound {
            program: "z3-codec-test-no-such-program".into()
        }
    );
    // Issue 15, point 5: the one line names the program and the fix.
    let line = err.to_string();
    assert!(
        line.contains("`z3-codec-test-no-such-program` not found on PATH"),
        "{line}"
    );
    assert!(line.contains("install it"), "{line}");
    assert!(line.contains("set COMPRESSOR to a built-in one"), "{line}");
    assert!(!line.contains('\n'), "{line}");

    let by_path = ExternalCodec::new("nope", "/nonexistent/z3/pigz", vec![]);
    let err = by_path
        .apply(crate::support::input(Vec::new()))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::ProgramNotFound {
            program: "/nonexistent/z3/pigz".into()
        }
    );
}

#[test]
fn apply_outside_a_runtime_is_a_spawn_error_not_a_panic() {
    let input: BoxedReader = Box::new(&b""[..]);
    let err = ExternalCodec::new("identity", "cat", vec![])
        .apply(input)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Spawn);
    assert!(err.to_string().contains("`cat`"), "{err}");
}

#[test]
fn unknown_metadata_names_the_value() {
    let err = decoder_for(Some("lz4")).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::UnknownCodec { name: "lz4".into() });
    assert!(err.to_string().contains("\"lz4\""), "{err}");
}

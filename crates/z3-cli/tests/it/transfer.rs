//! `pput` and `z3_get` as binaries: the upstream `test_pput.py` scenarios (docs/compatibility.md, "The
//! original's test suite") against the real server, and their usage errors offline.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use z3_s3::ObjectStore;

use crate::support::{RealEnv, assert_no_open_uploads, stderr, stdout};

/// The upstream 6 MiB sample: block k (0..6) repeats the 512-byte pattern k,0,k,1,…,k,255.
fn sample_data() -> Vec<u8> {
    let mut data = Vec::with_capacity(6 << 20);
    for block in 0..6u8 {
        for _ in 0..2048 {
            for counter in 0..=255u8 {
                data.push(block);
                data.push(counter);
            }
        }
    }
    data
}

fn tool(name: &str, env: Option<&RealEnv>, args: &[&str], input: &[u8]) -> Output {
    let program = match name {
        "pput" => env!("CARGO_BIN_EXE_pput"),
        _ => env!("CARGO_BIN_EXE_z3_get"),
    };
    let mut cmd = if let Some(env) = env {
        env.command(program)
    } else {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("Z3_CONFIG", "/dev/null")
            .env("BUCKET", "offline");
        cmd
    };
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    eprintln!(
        "$ {name} {} -> {:?}\n--- stderr\n{}",
        args.join(" "),
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn pput_usage_errors() {
    let out = tool("pput", None, &["--metadata", "bad", "key"], b"x");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "pput: error: malformed metadata 'bad'; should be key=value\n"
    );
    let out = tool(
        "pput",
        None,
        &["-s", "5M", "--estimated", "1G", "key"],
        b"x",
    );
    assert_eq!(out.status.code(), Some(2));
    let out = tool("pput", None, &["-s", "5Q", "key"], b"x");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("pput: error: invalid --chunk-size '5Q'"));
    let out = tool("z3_get", None, &[], b"");
    assert_eq!(out.status.code(), Some(2));
}

/// Upstream `test_integration`: the sample's multipart ETag and metadata, then `z3_get` returns it.
#[tokio::test]
async fn pput_sample_etag_metadata_and_z3_get_round_trip() {
    let Some(env) = RealEnv::get("pput_sample_etag_metadata_and_z3_get_round_trip") else {
        return;
    };
    let key = format!("z3_test_pput_{}", std::process::id());
    let data = sample_data();
    let out = tool(
        "pput",
        Some(&env),
        &[
            "-s",
            "5M",
            "--metadata",
            "ana=are+mere",
            "--meta",
            "dana=are=pere",
            "--quiet",
            &key,
        ],
        &data,
    );
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "{\"status\": \"success\", \"etag\": \"\\\"d229c1fc0e509475afe56426c89d2724-2\\\"\"}\n"
    );
    let store = env.store().await;
    let info = store.head(&key).await.unwrap();
    assert_eq!(
        info.etag.as_deref(),
        Some("\"d229c1fc0e509475afe56426c89d2724-2\"")
    );
    assert_eq!(
        info.metadata.get("ana").map(String::as_str),
        Some("are+mere")
    );
    assert_eq!(
        info.metadata.get("dana").map(String::as_str),
        Some("are=pere")
    );
    assert_eq!(info.storage_class.as_deref(), Some("STANDARD_IA"));

    let out = tool("z3_get", Some(&env), &["-s", "1M", &key], b"");
    assert!(out.status.success());
    assert!(out.stdout == data, "z3_get returned different bytes");
}

/// Empty input: an error, and nothing left on the server (upstream `test_zero_data`).
#[tokio::test]
async fn pput_refuses_zero_bytes() {
    let Some(env) = RealEnv::get("pput_refuses_zero_bytes") else {
        return;
    };
    let key = format!("z3_test_empty_{}", std::process::id());
    let out = tool("pput", Some(&env), &[&key], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("zero bytes"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let store = env.store().await;
    assert!(store.head(&key).await.is_err());
    assert_no_open_uploads(&store, &key).await;
}

/// A missing key: a message on stderr, nothing on stdout, exit 1 (the original wrote the message
/// into the restore pipe and exited 0).
#[test]
fn z3_get_missing_key_writes_nothing() {
    let Some(env) = RealEnv::get("z3_get_missing_key_writes_nothing") else {
        return;
    };
    let out = tool("z3_get", Some(&env), &["no/such/key"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("z3_get: error: "), "{err}");
    assert!(err.contains("no/such/key"), "{err}");
}

/// `--file-descriptor`: the stream comes from an inherited descriptor instead of stdin.
#[tokio::test]
async fn pput_reads_a_file_descriptor() {
    let Some(env) = RealEnv::get("pput_reads_a_file_descriptor") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.bin");
    std::fs::write(&file, b"from descriptor three").unwrap();
    let key = format!("z3_test_fd_{}", std::process::id());
    // A fixed script: it only redirects descriptor 3; names travel as arguments.
    let out = env
        .command("sh")
        .args([
            "-c",
            "exec \"$0\" --quiet --file-descriptor 3 \"$1\" 3<\"$2\" </dev/null",
            env!("CARGO_BIN_EXE_pput"),
            &key,
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tool("z3_get", Some(&env), &[&key], b"");
    assert_eq!(out.stdout, b"from descriptor three");
}

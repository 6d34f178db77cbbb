//! Round trips through the original's compressors, and the lifetime of the child process.

use std::time::Duration;

use z3_codec::{Codec, Compressor, ExternalCodec, decoder_for};

use crate::support::{input, round_trip, run, sample, skip_without};

/// Sizes around the interesting edges: empty, tiny, one pipe buffer, and beyond pigz's 4 MiB block.
const SIZES: [usize; 6] = [0, 1, 4095, 64 * 1024, 1536 * 1024, 5 * 1024 * 1024 + 3];

async fn check_pigz_round_trip(compressor: &Compressor) {
    let encoder = compressor.encoder().unwrap();
    let decoder = decoder_for(compressor.metadata_name()).unwrap().unwrap();
    for (seed, len) in SIZES.into_iter().enumerate() {
        let data = sample(len, seed as u64);
        let compressed = run(&encoder, data.clone()).await.unwrap();
        // gzip magic: the stage really compressed, it did not pass the data through.
        assert_eq!(&compressed[..2], b"\x1f\x8b", "{compressor} of {len} bytes");
        if len > 64 * 1024 {
            assert!(
                compressed.len() < data.len(),
                "{compressor} did not compress {len} bytes"
            );
        }
        let restored = run(&decoder, compressed).await.unwrap();
        assert!(
            restored == data,
            "{compressor} round trip of {len} bytes differs"
        );
        // The same through one chained pipeline, as backup feeds restore.
        let chained = round_trip(&encoder, &decoder, data.clone()).await.unwrap();
        assert!(
            chained == data,
            "{compressor} chained round trip of {len} bytes differs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pigz1_round_trip() {
    if skip_without("pigz") {
        return;
    }
    check_pigz_round_trip(&Compressor::Pigz1).await;
}

#[tokio::test]
async fn pigz4_round_trip() {
    if skip_without("pigz") {
        return;
    }
    check_pigz_round_trip(&Compressor::Pigz4).await;
}

/// What the original wrote must stay readable by anything that reads gzip, not only by pigz.
#[tokio::test]
async fn pigz1_output_is_valid_gzip() {
    if skip_without("pigz") || skip_without("gzip") {
        return;
    }
    let gzip = ExternalCodec::new("gzip", "gzip", vec!["-d".into()]);
    let encoder = Compressor::Pigz1.encoder().unwrap();
    for len in [0, 100, 2 * 1024 * 1024] {
        let data = sample(len, 7);
        let restored = round_trip(&encoder, &gzip, data.clone()).await.unwrap();
        assert!(
            restored == data,
            "gzip -d of pigz -1 output of {len} bytes differs"
        );
    }
}

#[tokio::test]
async fn cat_passes_data_through_unchanged() {
    let cat = ExternalCodec::new("identity", "cat", vec![]);
    for len in [0, 1, 3 * 1024 * 1024] {
        let data = sample(len, 3);
        assert!(
            run(&cat, data.clone()).await.unwrap() == data,
            "{len} bytes"
        );
    }
}

#[tokio::test]
async fn extra_environment_reaches_the_child() {
    let codec = ExternalCodec::new(
        "env",
        "sh",
        vec!["-c".into(), r#"cat; printf %s "$Z3_CODEC_TEST""#.into()],
    )
    .with_env("Z3_CODEC_TEST", "from with_env");
    assert_eq!(
        run(&codec, b"in:".to_vec()).await.unwrap(),
        b"in:from with_env"
    );
}

/// Reads the state letter from `/proc/<pid>/stat`; `None` once the process is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[tokio::test]
async fn dropping_the_output_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = r#"echo $$ > "$1"; exec sleep 1000"#;
    let codec = ExternalCodec::new(
        "sleeper",
        "sh",
        vec![
            "-c".into(),
            script.into(),
            "sh".into(),
            pid_file.to_str().unwrap().into(),
        ],
    );
    let output = codec.apply(input(Vec::new())).unwrap();

    let mut pid = None;
    for _ in 0..1000 {
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            pid = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid: u32 = pid.expect("the child wrote its pid");
    assert!(
        matches!(process_state(pid), Some(state) if state != 'Z'),
        "child is running"
    );

    drop(output);
    for _ in 0..1000 {
        if matches!(process_state(pid), None | Some('Z')) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("child {pid} still runs 10 s after the output was dropped");
}

#[test]
fn none_has_no_stages() {
    assert!(Compressor::None.encoder().is_none());
    assert!(
        decoder_for(Compressor::None.metadata_name())
            .unwrap()
            .is_none()
    );
}

#[test]
fn describe_is_the_dry_run_stage() {
    assert_eq!(
        Compressor::Pigz1.encoder().unwrap().describe(),
        "pigz -1 --blocksize 4096"
    );
    let gpg = Compressor::Gpg {
        recipient: "z3_backup".into(),
    };
    assert_eq!(
        gpg.encoder().unwrap().describe(),
        "gpg --batch -e -r z3_backup"
    );
    assert_eq!(
        decoder_for(Some("gpg")).unwrap().unwrap().describe(),
        "gpg --batch -d"
    );
}

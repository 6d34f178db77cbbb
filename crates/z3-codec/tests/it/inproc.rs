//! In-process zstd and gzip: round trips, cross-checks with the `zstd`, `gzip` and `pigz` programs, and the
//! failures that must never look like a good stream (corrupt data, truncation, a failing input).

use proptest::prelude::*;
use tokio::io::AsyncReadExt;
use z3_codec::{Codec, Compressor, ErrorKind, ExternalCodec, InProcessCodec, Stage, decoder_for};

use crate::support::{
    ChunkedReader, FailingReader, codec_error, read_in_steps, round_trip, run, sample, skip_without,
};

const ZSTD1: InProcessCodec = InProcessCodec::ZstdEncode {
    level: 1,
    threads: 2,
};
const ZSTD_SINGLE: InProcessCodec = InProcessCodec::ZstdEncode {
    level: 3,
    threads: 0,
};
const GZIP: InProcessCodec = InProcessCodec::GzipEncode { level: 6 };

fn encoders() -> [(InProcessCodec, InProcessCodec); 3] {
    [
        (ZSTD1, InProcessCodec::ZstdDecode),
        (ZSTD_SINGLE, InProcessCodec::ZstdDecode),
        (GZIP, InProcessCodec::GzipDecode),
    ]
}

#[tokio::test]
async fn round_trips_at_every_size() {
    for (encoder, decoder) in encoders() {
        for len in [0, 1, 4095, 1 << 20, (1 << 20) + 1, 5 << 20] {
            let data = sample(len, 7);
            let out = round_trip(&encoder, &decoder, data.clone()).await.unwrap();
            assert!(out == data, "{} at {len} bytes", encoder.describe());
        }
    }
}

#[tokio::test]
async fn compresses_compressible_data() {
    let data = sample(4 << 20, 3);
    for (encoder, _) in encoders() {
        let packed = run(&encoder, data.clone()).await.unwrap();
        assert!(
            packed.len() < data.len() / 2,
            "{}: {} of {} bytes",
            encoder.describe(),
            packed.len(),
            data.len()
        );
    }
}

/// Runs `program args` with `data` on stdin and returns its stdout, through the same external-codec path backups use.
async fn program(program: &str, args: &[&str], data: Vec<u8>) -> Vec<u8> {
    let codec = ExternalCodec::new(
        program,
        program,
        args.iter().map(|a| (*a).to_owned()).collect(),
    );
    run(&codec, data).await.unwrap()
}

#[tokio::test]
async fn zstd_interoperates_with_the_zstd_program() {
    if skip_without("zstd") {
        return;
    }
    let data = sample(3 << 20, 11);
    for encoder in [ZSTD1, ZSTD_SINGLE] {
        let ours = run(&encoder, data.clone()).await.unwrap();
        assert!(
            program("zstd", &["-d", "-c"], ours).await == data,
            "zstd -d reads {}",
            encoder.describe()
        );
    }
    for args in [
        &["-1", "-c"][..],
        &["-19", "-T2", "-c"],
        &["--no-check", "-c"],
    ] {
        let theirs = program("zstd", args, data.clone()).await;
        let out = run(&InProcessCodec::ZstdDecode, theirs).await.unwrap();
        assert!(out == data, "we read zstd {args:?}");
    }
    // Concatenated frames decode as one stream, as `zstd -d` reads them.
    let mut two = program("zstd", &["-c"], data[..1000].to_vec()).await;
    two.extend(program("zstd", &["-c"], data[1000..].to_vec()).await);
    assert!(run(&InProcessCodec::ZstdDecode, two).await.unwrap() == data);
}

#[tokio::test]
async fn gzip_interoperates_with_gzip_and_pigz() {
    let data = sample(3 << 20, 13);
    if !skip_without("gzip") {
        let ours = run(&GZIP, data.clone()).await.unwrap();
        assert!(program("gzip", &["-d", "-c"], ours).await == data);
        let theirs = program("gzip", &["-1", "-c"], data.clone()).await;
        assert!(run(&InProcessCodec::GzipDecode, theirs).await.unwrap() == data);
    }
    if skip_without("pigz") {
        return;
    }
    // What the original z3 wrote: pigz with 4 MiB blocks (here 128 KiB blocks, to get many of them).
    for compressor in [Compressor::Pigz1, Compressor::Pigz4] {
        let Some(Stage::External(encoder)) = compressor.encoder() else {
            panic!("pigz is a program");
        };
        let original = run(&encoder, data.clone()).await.unwrap();
        let decoder = decoder_for(compressor.metadata_name()).unwrap().unwrap();
        assert!(
            run(&decoder, original).await.unwrap() == data,
            "{compressor}"
        );
    }
    let small_blocks = program("pigz", &["-1", "--blocksize", "128", "-c"], data.clone()).await;
    assert!(
        run(&InProcessCodec::GzipDecode, small_blocks)
            .await
            .unwrap()
            == data
    );
    let ours = run(&GZIP, data.clone()).await.unwrap();
    assert!(program("pigz", &["-d", "-c"], ours).await == data);
}

fn corrupt_kind(err: &std::io::Error) -> ErrorKind {
    codec_error(err).kind().clone()
}

#[tokio::test]
async fn a_flipped_byte_fails_the_decoder() {
    let data = sample(2 << 20, 17);
    for (encoder, decoder) in encoders() {
        let mut packed = run(&encoder, data.clone()).await.unwrap();
        let middle = packed.len() / 2;
        packed[middle] ^= 0x20;
        let err = run(&decoder, packed).await.unwrap_err();
        assert_eq!(
            corrupt_kind(&err),
            ErrorKind::Corrupt,
            "{}: {err}",
            encoder.describe()
        );
        assert!(
            err.to_string().contains(&decoder.describe()),
            "the message names the decoder: {err}"
        );
    }
}

#[tokio::test]
async fn a_truncated_stream_is_an_error_not_a_short_stream() {
    let data = sample(2 << 20, 19);
    for (encoder, decoder) in encoders() {
        let packed = run(&encoder, data.clone()).await.unwrap();
        for cut in [1, packed.len() / 2, packed.len() - 1] {
            let err = run(&decoder, packed[..cut].to_vec()).await.unwrap_err();
            assert_eq!(
                corrupt_kind(&err),
                ErrorKind::Corrupt,
                "{} cut at {cut}",
                encoder.describe()
            );
        }
    }
}

#[tokio::test]
async fn garbage_after_the_stream_is_an_error() {
    let data = sample(100_000, 23);
    for (encoder, decoder) in encoders() {
        let mut packed = run(&encoder, data.clone()).await.unwrap();
        packed.extend_from_slice(b"not a frame at all, just trailing bytes");
        let err = run(&decoder, packed).await.unwrap_err();
        assert_eq!(
            corrupt_kind(&err),
            ErrorKind::Corrupt,
            "{}",
            encoder.describe()
        );
    }
}

#[tokio::test]
async fn a_failing_input_is_an_input_error() {
    for (encoder, decoder) in encoders() {
        let data = sample(300_000, 29);
        let err = {
            let mut out = Vec::new();
            encoder
                .apply(Box::new(FailingReader::new(data.clone())))
                .unwrap()
                .read_to_end(&mut out)
                .await
                .unwrap_err()
        };
        assert_eq!(
            corrupt_kind(&err),
            ErrorKind::Input,
            "{}",
            encoder.describe()
        );
        assert_eq!(
            std::error::Error::source(codec_error(&err))
                .unwrap()
                .to_string(),
            "disk on fire"
        );

        let packed = run(&encoder, data).await.unwrap();
        let mut out = Vec::new();
        let err = decoder
            .apply(Box::new(FailingReader::new(packed)))
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert_eq!(
            corrupt_kind(&err),
            ErrorKind::Input,
            "{}",
            decoder.describe()
        );
    }
}

#[tokio::test]
async fn an_upstream_codec_error_passes_through_unchanged() {
    // gzip's output fed to the zstd decoder is Corrupt at the zstd stage; a stage after it keeps that error.
    let packed = run(&GZIP, sample(10_000, 31)).await.unwrap();
    let zstd = InProcessCodec::ZstdDecode
        .apply(crate::support::input(packed))
        .unwrap();
    let after = InProcessCodec::GzipEncode { level: 1 }.apply(zstd).unwrap();
    let err = crate::support::read_all(after).await.unwrap_err();
    let inner = codec_error(&err);
    assert_eq!(inner.kind(), &ErrorKind::Corrupt);
    assert_eq!(inner.command_line(), Some("zstd -d (in-process)"));
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200_000),
        (any::<u8>(), 0..400_000usize).prop_map(|(byte, len)| vec![byte; len]),
        (0..300_000usize, any::<u64>()).prop_map(|(len, seed)| sample(len, seed)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_in_process_codec_round_trips_any_data_in_any_chunking(
        data in data(),
        which in 0..3usize,
        sizes in prop::collection::vec(1..70_000usize, 1..8),
        pending in prop::collection::vec(any::<bool>(), 0..4),
        read_size in 1..100_000usize,
    ) {
        let (encoder, decoder) = encoders()[which];
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let decoded = runtime.block_on(async {
            let input = ChunkedReader::new(data.clone(), sizes, pending);
            let output = decoder.apply(encoder.apply(Box::new(input)).unwrap()).unwrap();
            read_in_steps(output, read_size).await
        });
        prop_assert_eq!(decoded.len(), data.len());
        prop_assert!(decoded == data);
    }
}

/// Resuming a backup (ADR 4) needs the encoder to give the same bytes when the same stream is
/// encoded again. The pump never flushes mid-stream, so zstd's output must not depend on how
/// the input arrives (read sizes, pending reads) nor, in multi-threaded mode, on the number of
/// workers (zstd documents this for nbWorkers ≥ 1); single-threaded mode (0 workers) is a
/// different, equally deterministic encoding. A 24 MiB input spans several multi-threaded jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_output_depends_only_on_the_input_level_and_threaded_mode() {
    let data = sample(24 << 20, 11);
    let encode = |threads: u32, sizes: Vec<usize>, pending: Vec<bool>| {
        let data = data.clone();
        async move {
            let codec = InProcessCodec::ZstdEncode { level: 3, threads };
            let input = ChunkedReader::new(data, sizes, pending);
            crate::support::read_all(codec.apply(Box::new(input)).unwrap())
                .await
                .unwrap()
        }
    };
    let chunkings = [
        (vec![1 << 20], vec![false]),
        (vec![4096, 70_001, 13], vec![false, true]),
        (vec![8 << 20], vec![true, false, false]),
    ];
    for threads in [0, 1] {
        let first = encode(threads, vec![65_536], vec![false]).await;
        for (sizes, pending) in chunkings.clone() {
            let again = encode(threads, sizes.clone(), pending).await;
            assert!(again == first, "threads {threads}, chunks {sizes:?}");
        }
    }
    let one = encode(1, vec![65_536], vec![false]).await;
    for threads in [2, 4] {
        assert!(
            encode(threads, vec![65_536], vec![false]).await == one,
            "{threads} workers"
        );
    }
}

//! A z3 compressor as a filter: standard input through one codec stage to standard output, the way
//! `z3 backup` runs it between `zfs send` and the upload (and `z3 restore` in reverse).
//!
//! `cargo run --release -p z3-examples --example codec_pipe -- encode zstd1 < in > out`
//! `cargo run --release -p z3-examples --example codec_pipe -- decode zstd < out > in`
//! `cargo run --release -p z3-examples --example codec_pipe -- encrypt age1… < in > out.age`
//! `cargo run --release -p z3-examples --example codec_pipe -- decrypt key.txt < out.age > in`
//! `cargo run --release -p z3-examples --example codec_pipe -- encode-sealed zstd < in > out`
//! (`encode-sealed`: as `encode`, plus the two BLAKE3 digests `z3 backup` computes for the seal,
//! of the input stream and of the encoded bytes, printed on stderr.)
//!
//! `cargo xtask bench codecs` times it against the `zstd`, `pigz`, `gzip` and `age` programs. It
//! prints the bytes in and out on stderr.

use std::io::Write;

use anyhow::{Context, bail};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use z3_cli::stdio::{stdin_file, stdout_file};
use z3_codec::{
    AgeCodec, AgeIdentities, AgeRecipients, BoxedReader, Codec, Compressor, DigestReader, Stage,
    decoder_for,
};
use z3_s3::ThreadWriter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [direction, name] = args.as_slice() else {
        bail!(
            "usage: codec_pipe encode|decode COMPRESSOR, encrypt AGE_RECIPIENT or decrypt IDENTITY_FILE \
             < input > output"
        );
    };
    let sealed = direction == "encode-sealed";
    let stage = match direction.as_str() {
        "encode" | "encode-sealed" => Compressor::parse(name, "z3_backup")?.encoder(),
        "decode" => decoder_for(Some(name))?,
        "encrypt" => Some(Stage::Age(AgeCodec::encrypt(AgeRecipients::parse(&[
            name,
        ])?))),
        "decrypt" => Some(Stage::Age(AgeCodec::decrypt(AgeIdentities::from_files(
            &[name.into()],
        )?))),
        other => bail!("{other:?}: expected encode or decode"),
    };
    if stage.is_none() && !sealed {
        bail!("{name} has no {direction} stage");
    }

    let input = stdin_file().context("reading standard input")?;
    let (input, stream_digest) = DigestReader::new(tokio::fs::File::from_std(input));
    let input: BoxedReader = if sealed {
        Box::new(input)
    } else {
        Box::new(input.into_inner())
    };
    let encoded = match &stage {
        Some(stage) => stage.apply(input)?,
        None => input,
    };
    let (output, object_digest) = DigestReader::new(encoded);
    let mut output: BoxedReader = if sealed {
        Box::new(output)
    } else {
        Box::new(output.into_inner())
    };
    let mut out = ThreadWriter::spawn(stdout_file().context("writing standard output")?, "stdout")
        .context("writing standard output")?;
    let mut written: u64 = 0;
    loop {
        let mut buf = BytesMut::with_capacity(1 << 20);
        while buf.len() < (1 << 20) {
            if output.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
        written += buf.len() as u64;
        out.write(vec![buf.freeze()]).await?;
    }
    out.finish().await?;
    writeln!(
        std::io::stderr(),
        "{}: {written} bytes out",
        stage
            .as_ref()
            .map_or_else(|| "none".to_owned(), Stage::describe)
    )?;
    if sealed {
        let show = |d: &z3_codec::DigestHandle| {
            d.finish().map_or_else(
                || "none".to_owned(),
                |(blake3, len)| format!("{:?}", z3_core::Digest { len, blake3 }),
            )
        };
        writeln!(std::io::stderr(), "stream: {}", show(&stream_digest))?;
        writeln!(std::io::stderr(), "object: {}", show(&object_digest))?;
    }
    Ok(())
}

//! age: our encryption read by the `age` crate and the `age` program, theirs read by us, several
//! recipients, passphrases, and the failures (wrong key, flipped byte, truncation, failing input).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use age::secrecy::{ExposeSecret, SecretString};
use proptest::prelude::*;
use z3_codec::{AgeCodec, AgeIdentities, AgeRecipients, Codec, ErrorKind};

use crate::support::{
    ChunkedReader, FailingReader, codec_error, read_in_steps, run, sample, skip_without,
};

const CHUNK: usize = 64 * 1024;

/// A fresh X25519 key pair written as `age-keygen` writes it.
struct Key {
    identity: age::x25519::Identity,
    file: PathBuf,
}

impl Key {
    fn new(dir: &Path, name: &str) -> Self {
        let identity = age::x25519::Identity::generate();
        let file = dir.join(name);
        let text = format!(
            "# created: for a test\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        );
        std::fs::write(&file, text).unwrap();
        Self { identity, file }
    }

    fn public(&self) -> String {
        self.identity.to_public().to_string()
    }

    fn identities(&self) -> AgeIdentities {
        AgeIdentities::from_files(std::slice::from_ref(&self.file)).unwrap()
    }
}

fn encrypt_to(keys: &[&Key]) -> AgeCodec {
    let publics: Vec<String> = keys.iter().map(|k| k.public()).collect();
    AgeCodec::encrypt(AgeRecipients::parse(&publics).unwrap())
}

/// Decrypts with the `age` crate's own reader, as a second opinion on our format.
fn crate_decrypt(data: &[u8], identity: &dyn age::Identity) -> Result<Vec<u8>, String> {
    let decryptor = age::Decryptor::new(data).map_err(|e| e.to_string())?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Runs the `age` program on `data`.
fn age_program(args: &[&str], data: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new("age")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sizes around the 64 KiB chunks and the 32-chunk batches of the encryptor.
const SIZES: &[usize] = &[
    0,
    1,
    CHUNK - 1,
    CHUNK,
    CHUNK + 1,
    2 * CHUNK,
    32 * CHUNK - 1,
    32 * CHUNK,
    32 * CHUNK + 1,
    64 * CHUNK,
    (3 << 20) + 5,
];

#[tokio::test]
async fn encrypted_output_is_age_v1_that_the_age_crate_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(dir.path(), "key.txt");
    for &len in SIZES {
        let data = sample(len, len as u64);
        let sealed = run(&encrypt_to(&[&key]), data.clone()).await.unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1\n-> X25519 "));
        let chunks = len.div_ceil(CHUNK).max(1);
        assert!(sealed.len() > len + 16 * chunks, "{len}: header and tags");
        let opened = crate_decrypt(&sealed, &key.identity).unwrap();
        assert!(opened == data, "the age crate reads our {len} bytes");
        let ours = run(&AgeCodec::decrypt(key.identities()), sealed)
            .await
            .unwrap();
        assert!(ours == data, "we read our {len} bytes");
    }
}

#[tokio::test]
async fn interoperates_with_the_age_program_both_ways() {
    if skip_without("age") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(dir.path(), "key.txt");
    let identity = key.file.to_str().unwrap();
    for len in [0, CHUNK, 32 * CHUNK, (2 << 20) + 77] {
        let data = sample(len, 5);
        let sealed = run(&encrypt_to(&[&key]), data.clone()).await.unwrap();
        let (ok, opened, stderr) = age_program(&["-d", "-i", identity], &sealed);
        assert!(ok, "age -d failed on our {len} bytes: {stderr}");
        assert!(opened == data, "age -d reads our {len} bytes");

        let (ok, theirs, stderr) = age_program(&["-r", &key.public()], &data);
        assert!(ok, "{stderr}");
        let ours = run(&AgeCodec::decrypt(key.identities()), theirs)
            .await
            .unwrap();
        assert!(ours == data, "we read age -e's {len} bytes");
    }
}

#[tokio::test]
async fn every_recipient_can_decrypt_and_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, stranger) = (
        Key::new(dir.path(), "a"),
        Key::new(dir.path(), "b"),
        Key::new(dir.path(), "c"),
    );
    let data = sample(300_000, 9);
    let sealed = run(&encrypt_to(&[&a, &b]), data.clone()).await.unwrap();
    for key in [&a, &b] {
        let out = run(&AgeCodec::decrypt(key.identities()), sealed.clone()).await;
        assert!(out.unwrap() == data);
    }
    // Several identity files: the one that fits is used.
    let both = AgeIdentities::from_files(&[stranger.file.clone(), b.file.clone()]).unwrap();
    assert!(run(&AgeCodec::decrypt(both), sealed.clone()).await.unwrap() == data);

    let decrypt = AgeCodec::decrypt(stranger.identities());
    let err = run(&decrypt, sealed).await.unwrap_err();
    let inner = codec_error(&err);
    assert!(
        matches!(inner.kind(), ErrorKind::NoMatchingIdentity { identities } if identities.ends_with("/c")),
        "{inner:?}"
    );
    let message = inner.to_string();
    assert!(message.contains("none of the age identities"), "{message}");
    assert!(
        !message.contains("AGE-SECRET-KEY"),
        "never print a key: {message}"
    );
}

#[tokio::test]
async fn passphrases_work_and_interoperate() {
    let secret = || SecretString::from("correct horse battery staple".to_owned());
    let data = sample(200_000, 21);
    let sealed = run(
        &AgeCodec::encrypt(AgeRecipients::passphrase(secret())),
        data.clone(),
    )
    .await
    .unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    let identity = age::scrypt::Identity::new(secret());
    assert!(crate_decrypt(&sealed, &identity).unwrap() == data);
    let decrypt = AgeCodec::decrypt(AgeIdentities::passphrase(secret()));
    assert!(run(&decrypt, sealed.clone()).await.unwrap() == data);

    let wrong = AgeCodec::decrypt(AgeIdentities::passphrase(SecretString::from(
        "wrong".to_owned(),
    )));
    let err = run(&wrong, sealed).await.unwrap_err();
    assert!(
        matches!(
            codec_error(&err).kind(),
            ErrorKind::NoMatchingIdentity { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn damaged_objects_fail_and_never_hand_out_unauthenticated_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(dir.path(), "key.txt");
    let data = sample(5 * CHUNK + 100, 4);
    let sealed = run(&encrypt_to(&[&key]), data.clone()).await.unwrap();
    let decrypt = AgeCodec::decrypt(key.identities());

    // A flipped byte in the payload, in the header, and in the final tag.
    for at in [sealed.len() / 2, 30, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 1;
        let err = run(&decrypt, bad).await.unwrap_err();
        let kind = codec_error(&err).kind().clone();
        assert!(
            matches!(
                kind,
                ErrorKind::Corrupt | ErrorKind::NoMatchingIdentity { .. }
            ),
            "byte {at}: {kind:?}"
        );
    }
    // Truncated at a chunk boundary (after the header) and in the middle of a chunk.
    let header_len = sealed.len() - data.len() - 6 * 16;
    for cut in [header_len + 2 * (CHUNK + 16), sealed.len() - 50, header_len] {
        let err = run(&decrypt, sealed[..cut].to_vec()).await.unwrap_err();
        assert_eq!(
            codec_error(&err).kind(),
            &ErrorKind::Corrupt,
            "cut at {cut}"
        );
    }
    // Not age at all.
    let err = run(&decrypt, sample(10_000, 1)).await.unwrap_err();
    assert_eq!(codec_error(&err).kind(), &ErrorKind::Corrupt);
    // Trailing garbage after the last chunk.
    let mut longer = sealed.clone();
    longer.extend_from_slice(b"more");
    assert!(run(&decrypt, longer).await.is_err());
}

#[tokio::test]
async fn a_failing_input_is_an_input_error_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(dir.path(), "key.txt");
    let data = sample(3 * CHUNK, 2);
    let encrypt = encrypt_to(&[&key]);
    let out = encrypt
        .apply(Box::new(FailingReader::new(data.clone())))
        .unwrap();
    let err = crate::support::read_all(out).await.unwrap_err();
    assert_eq!(codec_error(&err).kind(), &ErrorKind::Input);

    let sealed = run(&encrypt, data).await.unwrap();
    let decrypt = AgeCodec::decrypt(key.identities());
    let out = decrypt
        .apply(Box::new(FailingReader::new(
            sealed[..sealed.len() / 2].to_vec(),
        )))
        .unwrap();
    let err = crate::support::read_all(out).await.unwrap_err();
    assert_eq!(codec_error(&err).kind(), &ErrorKind::Input);
}

#[test]
fn bad_keys_and_key_files_are_named() {
    let err = AgeRecipients::parse(&["age1notakey"]).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InvalidKey { .. }));
    assert!(err.to_string().contains("\"age1notakey\""), "{err}");
    assert!(AgeRecipients::parse::<&str>(&[]).is_err());

    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(dir.path(), "key.txt");
    let list = dir.path().join("recipients.txt");
    std::fs::write(&list, format!("# team\n\n{}\n", key.public())).unwrap();
    assert_eq!(
        AgeRecipients::from_file(&list).unwrap(),
        AgeRecipients::parse(&[key.public()]).unwrap()
    );
    std::fs::write(&list, format!("{}\nssh-ed25519 AAAA\n", key.public())).unwrap();
    let err = AgeRecipients::from_file(&list).unwrap_err();
    assert!(err.to_string().contains("recipients.txt line 2"), "{err}");

    let missing = dir.path().join("nope.txt");
    let err = AgeIdentities::from_files(&[missing]).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::KeyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.txt"), "{err}");

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# nothing here\n").unwrap();
    let err = AgeIdentities::from_files(&[empty]).unwrap_err();
    assert!(err.to_string().contains("empty.txt"), "{err}");

    let passphrase = AgeRecipients::passphrase(SecretString::from("hunter2-secret".to_owned()));
    assert!(
        passphrase
            .clone()
            .merge(AgeRecipients::parse(&[key.public()]).unwrap())
            .is_err()
    );
    assert!(!format!("{passphrase:?}").contains("hunter2"));
    let identities = AgeIdentities::passphrase(SecretString::from("hunter2-secret".to_owned()));
    assert!(!format!("{identities:?}").contains("hunter2"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn age_round_trips_any_data_in_any_chunking(
        len in 0..(3 * CHUNK + 10),
        seed in any::<u64>(),
        sizes in prop::collection::vec(1..70_000usize, 1..8),
        pending in prop::collection::vec(any::<bool>(), 0..4),
        read_size in 1..100_000usize,
        threads in 1..4usize,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new(dir.path(), "key.txt");
        let data = sample(len, seed);
        let encrypt = AgeCodec::Encrypt {
            recipients: AgeRecipients::parse(&[key.public()]).unwrap(),
            threads,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let decoded = runtime.block_on(async {
            let input = ChunkedReader::new(data.clone(), sizes, pending);
            let output = AgeCodec::decrypt(key.identities())
                .apply(encrypt.apply(Box::new(input)).unwrap())
                .unwrap();
            read_in_steps(output, read_size).await
        });
        prop_assert_eq!(decoded.len(), data.len());
        prop_assert!(decoded == data);
    }
}

#[tokio::test]
async fn zstd_then_age_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(dir.path(), "key.txt");
    let data = sample(2 << 20, 8);
    let zstd = z3_codec::Compressor::Zstd { level: 1 };
    let packed = zstd
        .encoder()
        .unwrap()
        .apply(crate::support::input(data.clone()))
        .unwrap();
    let sealed = encrypt_to(&[&key]).apply(packed).unwrap();
    let opened = AgeCodec::decrypt(key.identities()).apply(sealed).unwrap();
    let out = zstd.decoder().unwrap().apply(opened).unwrap();
    assert!(crate::support::read_all(out).await.unwrap() == data);
}

//! gpg round trips with a throw-away key in a temporary `GNUPGHOME`; skipped when gpg is missing.

use std::path::Path;
use std::process::Command;

use z3_codec::{Codec, Compressor, ExternalCodec, Stage, decoder_for};

use crate::support::{codec_error, failed, round_trip, run, sample, skip_without};

/// A temporary gpg home; stops the gpg daemons started in it when dropped.
struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("z3gpg").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        // Without this, gpg looks unknown mail addresses up over the network (WKD).
        std::fs::write(
            dir.path().join("gpg.conf"),
            "no-auto-key-locate\nno-auto-key-retrieve\n",
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn generate_key(&self, uid: &str) {
        let status = Command::new("gpg")
            .arg("--batch")
            .arg("--homedir")
            .arg(self.path())
            .args([
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "default",
                "default",
                "never",
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "gpg --quick-gen-key failed: {status}");
    }

    fn codec(&self, stage: Stage) -> ExternalCodec {
        let Stage::External(codec) = stage else {
            panic!("gpg runs as a program");
        };
        codec.with_env("GNUPGHOME", self.path())
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        // gpg starts gpg-agent (and possibly dirmngr) in the home; they would outlive the test otherwise.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.path())
            .args(["--kill", "all"])
            .status();
    }
}

#[tokio::test]
async fn gpg_round_trip_with_a_throw_away_key() {
    if skip_without("gpg") {
        return;
    }
    let home = GpgHome::new();
    home.generate_key("z3 test <z3@example.invalid>");
    let compressor = Compressor::parse("gpg", "z3@example.invalid").unwrap();
    let encoder = home.codec(compressor.encoder().unwrap());
    let decoder = home.codec(decoder_for(compressor.metadata_name()).unwrap().unwrap());

    for len in [0, 1000, 1536 * 1024] {
        let data = sample(len, 11);
        let encrypted = run(&encoder, data.clone()).await.unwrap();
        assert!(!encrypted.is_empty());
        if len > 0 {
            let probe = &data[..data.len().min(64)];
            assert!(
                !encrypted.windows(probe.len()).any(|w| w == probe),
                "plaintext leaked"
            );
        }
        let decrypted = run(&decoder, encrypted).await.unwrap();
        assert!(decrypted == data, "gpg round trip of {len} bytes differs");
        assert!(
            round_trip(&encoder, &decoder, data.clone()).await.unwrap() == data,
            "{len} bytes chained"
        );
    }
}

/// gpg refuses an unknown recipient before reading its input: the error is gpg's, not a broken pipe.
#[tokio::test]
async fn gpg_with_an_unknown_recipient_reports_gpg_stderr() {
    if skip_without("gpg") {
        return;
    }
    let home = GpgHome::new();
    let encoder = home.codec(
        Compressor::Gpg {
            recipient: "z3-no-such-key".into(),
        }
        .encoder()
        .unwrap(),
    );
    let err = run(&encoder, sample(4 * 1024 * 1024, 12))
        .await
        .unwrap_err();
    let (command, status, stderr) = failed(codec_error(&err));
    assert_eq!(command, encoder.describe());
    assert!(!status.success());
    assert!(stderr.contains("z3-no-such-key"), "{stderr}");
}

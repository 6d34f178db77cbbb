//! The binary's surface without any service: help text, usage errors and their exit codes.

use assert_cmd::Command;
use predicates::prelude::*;

fn z3() -> Command {
    let mut cmd = Command::cargo_bin("z3").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("Z3_CONFIG", "/dev/null");
    cmd
}

#[test]
fn help_lists_commands_config_and_exit_codes() {
    z3().arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("status"))
        .stdout(predicate::str::contains("backup"))
        .stdout(predicate::str::contains("restore"))
        .stdout(predicate::str::contains("--s3-prefix"))
        .stdout(predicate::str::contains("[alias: --filesystem]"))
        .stdout(predicate::str::contains("3  integrity problem"));
    z3().args(["backup", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--dry-run"))
        .stdout(predicate::str::contains("--parseable"))
        .stdout(predicate::str::contains("zstd1..zstd19"))
        .stdout(predicate::str::contains("--age-recipient <KEY>"))
        .stdout(predicate::str::contains("--age-passphrase-file"));
    z3().args(["restore", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("zfs receive -F"))
        .stdout(predicate::str::contains("--age-identity <PATH>"));
}

#[test]
fn unknown_compressor_is_a_usage_error_naming_it() {
    z3().args(["backup", "--compressor", "zstd42"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown compressor \"zstd42\""));
    // Could be a [compressor:lz4] section, so the config file decides, before any connection.
    z3().args(["backup", "--dry-run", "--compressor", "lz4"])
        .env("BUCKET", "b")
        .env("FILESYSTEM", "pool/fs")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid COMPRESSOR 'lz4': unknown compressor \"lz4\"",
        ));
}

#[test]
fn no_subcommand_is_a_usage_error() {
    // The Python 3 original connected to S3 and exited 0 silently here.
    z3().assert()
        .code(2)
        .stderr(predicate::str::contains("Usage: z3"));
}

#[test]
fn missing_bucket_is_a_one_line_usage_error() {
    z3().args(["--dataset", "pool/fs", "status"])
        .assert()
        .code(2)
        .stderr(
            "z3: error: BUCKET is not set: add `BUCKET = <name>` to the [main] section of /etc/z3_backup/z3.conf (or of the file --config or Z3_CONFIG names), or set BUCKET in the environment\n",
        );
}

#[test]
fn invalid_dataset_name_is_a_usage_error_naming_it() {
    z3().args(["--dataset", "pool/bad name!", "status"])
        .env("BUCKET", "b")
        .assert()
        .code(2)
        .stderr("z3: error: invalid FILESYSTEM 'pool/bad name!': invalid character '!' in name\n");
}

#[test]
fn names_zfs_refuses_are_usage_errors_before_any_connection() {
    // Nothing listens on this endpoint: the name must be refused first.
    for (args, expect) in [
        (
            vec!["restore", "snap\"quoted"],
            "z3: error: invalid snapshot name 'snap\"quoted': invalid character '\"' in name\n",
        ),
        (
            vec!["restore", "caf\u{e9}"],
            "z3: error: invalid snapshot name 'caf\u{e9}': invalid character '\u{e9}' in name\n",
        ),
        (
            vec!["backup", "--snapshot", "a@b"],
            "z3: error: invalid snapshot name 'a@b': multiple '@' delimiters in name\n",
        ),
    ] {
        z3().args(&args)
            .env("BUCKET", "b")
            .env("FILESYSTEM", "pool/fs")
            .env("S3_ENDPOINT", "http://127.0.0.1:9")
            .assert()
            .code(2)
            .stderr(expect);
    }
    z3().args(["--dataset", "pool/caf\u{e9}", "status"])
        .env("BUCKET", "b")
        .assert()
        .code(2)
        .stderr(
            "z3: error: invalid FILESYSTEM 'pool/caf\u{e9}': invalid character '\u{e9}' in name\n",
        );
}

#[test]
fn key_id_without_secret_is_refused() {
    z3().args(["--dataset", "pool/fs", "status"])
        .env("BUCKET", "b")
        .env("S3_KEY_ID", "AKIAEXAMPLE")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("S3_SECRET is not set"));
}

#[test]
fn malformed_config_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z3.conf");
    std::fs::write(&path, "[main\nBUCKET=x\n").unwrap();
    z3().args(["status"])
        .env("Z3_CONFIG", &path)
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(format!(
            "z3: error: cannot read config file {}",
            path.display()
        )));
}

#[test]
fn explicit_missing_config_file_is_an_error() {
    z3().args(["--config", "/nonexistent/z3.conf", "status"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/z3.conf"));
}

#[test]
fn unreachable_endpoint_fails_with_one_line() {
    // Port 9 (discard) on loopback: nothing listens there.
    let out = z3()
        .args(["--dataset", "pool/fs", "status"])
        .env("BUCKET", "b")
        .env("S3_KEY_ID", "AKIAEXAMPLE")
        .env("S3_SECRET", "do-not-print-me")
        .env("S3_ENDPOINT", "http://127.0.0.1:9")
        .env("MAX_RETRIES", "1")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("z3: error: "), "{err}");
    assert!(!err.contains("do-not-print-me"), "{err}");
}

#[test]
fn verify_needs_a_snapshot_or_all_and_a_sane_sample() {
    z3().args(["verify"])
        .env("BUCKET", "b")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--all"));
    z3().args(["verify", "--all", "--sample", "0"])
        .env("BUCKET", "b")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "'0' is not a percentage above 0 and at most 100",
        ));
    z3().args(["verify", "snap\"quoted"])
        .env("BUCKET", "b")
        .assert()
        .code(2)
        .stderr(
            "z3: error: invalid snapshot name 'snap\"quoted': invalid character '\"' in name\n",
        );
}

fn ssh_sync() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("z3_ssh_sync").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("Z3_CONFIG", "/dev/null");
    cmd
}

#[test]
fn ssh_sync_refuses_bad_input_before_running_ssh() {
    // No ssh is ever started for these: the program does not even exist.
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--dataset",
                "pool/fs",
                "--",
                "-oProxyCommand=touch /tmp/pwned",
            ],
            "z3_ssh_sync: error: invalid ssh destination '-oProxyCommand=touch /tmp/pwned'\n",
        ),
        (
            &["host"],
            "z3_ssh_sync: error: no dataset: give --dataset or set FILESYSTEM\n",
        ),
        (
            &["--dataset", "pool/bad name!", "host"],
            "z3_ssh_sync: error: invalid dataset name 'pool/bad name!': invalid character '!' in name\n",
        ),
        (
            &[
                "--dataset",
                "pool/fs",
                "--remote-dataset",
                "tank/x'y",
                "host",
            ],
            "z3_ssh_sync: error: invalid dataset name 'tank/x'y': invalid character ''' in name\n",
        ),
    ];
    for (args, expected) in cases {
        ssh_sync()
            .args(["--ssh-program", "/nonexistent/ssh"])
            .args(args)
            .assert()
            .code(2)
            .stderr(expected.to_owned());
    }
    ssh_sync()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicates::str::contains("Exit codes: 0 success"));
}

/// `status --check` answers every failure the monitoring-plugin way: the UNKNOWN line on
/// stdout and exit 3, for bad flags and a missing configuration alike.
#[test]
fn status_check_turns_every_error_into_unknown() {
    for args in [
        &["status", "--check", "--warn-age", "5x"][..],
        &["status", "--check", "--json"],
        &["status", "--check", "--no-such-flag"],
        &["status", "--check"], // no BUCKET
    ] {
        z3().args(args)
            .assert()
            .code(3)
            .stdout(predicate::str::starts_with("Z3 UNKNOWN - "))
            .stdout(predicate::function(|out: &str| out.lines().count() == 1));
    }
    z3().args(["status", "--check"])
        .assert()
        .stdout(predicate::str::contains("BUCKET is not set"));
    z3().args(["status", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--warn-age <AGE>"));
}

/// `--version` of every binary names the version and the commit it was built from.
#[test]
fn every_binary_names_its_version_and_commit() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    for binary in ["z3", "pput", "z3_get", "z3_ssh_sync", "z3_mp_cleanup"] {
        let out = Command::cargo_bin(binary)
            .unwrap()
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success(), "{binary}");
        let line = String::from_utf8(out.stdout).unwrap();
        let rest = line
            .trim_end()
            .strip_prefix(&format!("{binary} {} (", env!("CARGO_PKG_VERSION")))
            .unwrap_or_else(|| panic!("{line}"));
        let commit = rest.strip_suffix(')').unwrap().trim_end_matches("-dirty");
        match &head {
            Some(head) => assert_eq!(commit, head, "{line}"),
            None => assert_eq!(commit, "unknown", "{line}"),
        }
    }
}

//! The configuration parser on arbitrary files and environments: errors, never panics.

use proptest::prelude::*;
use z3_cli::config::{FlagOverrides, IniFile, Settings, layer};

fn ini_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[main]".to_owned()),
        "\\[fs:[a-z/ ]{0,10}\\]",
        "\\[compressor:[a-z0-9 .-]{0,8}\\]",
        "(BUCKET|COMPRESSOR|CONCURRENCY|CHUNK_SIZE|MAX_RETRIES|S3_PATH_STYLE|FILESYSTEM|AGE_RECIPIENTS|COMPRESS|DECOMPRESS|S3_KEY_ID|S3_SECRET) ?= ?.{0,20}",
        ".{0,30}",
        Just("  continued value".to_owned()),
    ];
    proptest::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_files_and_environments_never_panic(
        text in ini_text(),
        env in proptest::collection::vec(("(BUCKET|CONCURRENCY|CHUNK_SIZE|FILESYSTEM|S3_PREFIX|HOST|AGE_RECIPIENTS)", ".{0,20}"), 0..5),
    ) {
        let Ok(file) = IniFile::parse(&text, None) else { return Ok(()) };
        let _ = file.compressors();
        if let Ok(raw) = layer(&file, env, &FlagOverrides::default())
            && let Ok(settings) = Settings::resolve(raw)
        {
            let _ = settings.age.recipients();
            let _ = format!("{settings:?}");
        }
    }
}

/// Values for numeric flags: in range, at and past the maxima, negative, huge, not numbers.
fn numeric_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "8",
            "1024",
            "1025",
            "65535",
            "65536",
            "5M",
            "5G",
            "6G",
            "1G",
            "2G",
            "5T",
            "6T",
            "1e300",
            "-1e300",
            "NaN",
            "inf",
            "0.5",
            "36500",
            "36501",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999T",
            " 7 ",
            "",
        ])
        .prop_map(str::to_owned),
        "[0-9]{1,22}[KMGTkmgt]?",
        "-?[0-9]{0,4}\\.?[0-9]{0,4}(e[0-9]{1,3})?",
        ".{0,12}",
    ]
}

/// `flag value` pairs drawn from `flags`.
fn flag_values(flags: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec((prop::sample::select(flags), numeric_value()), 0..4).prop_map(
        |pairs| {
            pairs
                .into_iter()
                .flat_map(|(flag, value)| [flag.to_owned(), value])
                .collect()
        },
    )
}

fn argv(program: &str, flags: Vec<String>, tail: &[&str]) -> Vec<String> {
    std::iter::once(program.to_owned())
        .chain(flags)
        .chain(tail.iter().map(|s| (*s).to_owned()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every numeric flag of every binary: parsed and checked the way the binary does, an
    /// error or a value within its documented bounds, never a panic.
    #[test]
    fn numeric_flags_of_every_binary_are_bounded_and_never_panic(
        pput in flag_values(&["-s", "--chunk-size", "--estimated", "--concurrency", "--file-descriptor"]),
        get in flag_values(&["-s", "--chunk-size", "--concurrency"]),
        cleanup in flag_values(&["--max-age"]),
        sync in flag_values(&["--ssh-port"]),
        sample in numeric_value(),
        env in proptest::collection::vec((prop::sample::select(vec!["CONCURRENCY", "CHUNK_SIZE", "MAX_RETRIES", "S3_TIMEOUT", "MEMORY_LIMIT"]), numeric_value()), 0..4),
    ) {
        use clap::Parser;
        use z3_cli::config::MAX_CONCURRENCY;

        if let Ok(args) = z3_cli::transfer::PputArgs::try_parse_from(argv("pput", pput, &["key"]))
            && let Ok(limits) = args.limits(256 << 20, 32, 1 << 30)
        {
            prop_assert!((z3_s3::MIN_PART_SIZE..=z3_s3::MAX_PART_SIZE).contains(&limits.part_size));
            prop_assert!((1..=MAX_CONCURRENCY).contains(&limits.concurrency));
            prop_assert!(limits.estimate.is_none_or(|e| e <= z3_s3::MAX_OBJECT_SIZE));
        }
        if let Ok(args) = z3_cli::transfer::GetArgs::try_parse_from(argv("z3_get", get, &["key"]))
            && let Ok((part, concurrency)) = args.limits(1 << 30)
        {
            prop_assert!((1..=z3_cli::transfer::MAX_GET_CHUNK).contains(&part));
            prop_assert!((1..=MAX_CONCURRENCY).contains(&concurrency));
        }
        if let Ok(args) = z3_cli::cleanup::CleanupArgs::try_parse_from(argv("z3_mp_cleanup", cleanup, &[])) {
            // What the command computes from it (panicked for 1e300 before).
            let age = std::time::Duration::try_from_secs_f64(args.max_age * 86_400.0);
            prop_assert!(age.is_ok(), "{}", args.max_age);
            prop_assert!(args.max_age <= z3_cli::cleanup::MAX_AGE_DAYS);
        }
        if let Ok(args) = z3_cli::sync::SyncArgs::try_parse_from(argv("z3_ssh_sync", sync, &["host"])) {
            prop_assert!(args.ssh_port.is_none_or(|port| port >= 1));
        }
        let verify = ["verify", "--all", "--sample", sample.as_str()];
        if let Ok(cli) = z3_cli::args::Cli::try_parse_from(
            std::iter::once("z3").chain(["--config", "/dev/null"]).chain(verify),
        ) {
            let env = env
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .chain([("BUCKET".to_owned(), "b".to_owned())]);
            if let Ok(settings) = z3_cli::load_settings(&cli, env) {
                prop_assert!((1..=MAX_CONCURRENCY).contains(&settings.transfer.concurrency));
                prop_assert!(settings.transfer.chunk_size <= z3_s3::MAX_PART_SIZE);
            }
        }
    }
}

/// A program, its arguments, extra environment and a piece of the expected message.
type Case = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Past a documented maximum: exit 2 and one line naming the flag or key, before any connection
/// (these ran, or panicked, before they were bounded).
#[test]
fn flags_past_their_maxima_are_usage_errors() {
    let cases: &[Case] = &[
        (
            "pput",
            &["-s", "6G", "k"],
            &[],
            "invalid --chunk-size '6G': must be at most 5G",
        ),
        (
            "pput",
            &["--concurrency", "1025", "k"],
            &[],
            "invalid --concurrency '1025'",
        ),
        (
            "pput",
            &["--concurrency", "0", "k"],
            &[],
            "invalid --concurrency '0'",
        ),
        (
            "pput",
            &["--estimated", "6T", "k"],
            &[],
            "invalid --estimated '6T'",
        ),
        ("pput", &["k"], &[("CONCURRENCY", "1025")], "CONCURRENCY"),
        ("pput", &["k"], &[("CHUNK_SIZE", "6G")], "CHUNK_SIZE"),
        (
            "z3_get",
            &["-s", "2G", "k"],
            &[],
            "invalid --chunk-size '2G': must be at most 1G",
        ),
        (
            "z3_get",
            &["--concurrency", "100000", "k"],
            &[],
            "invalid --concurrency '100000'",
        ),
        (
            "z3_mp_cleanup",
            &["--max-age", "1e300"],
            &[],
            "'1e300' is not a number of days",
        ),
        (
            "z3_ssh_sync",
            &["--ssh-port", "0", "host"],
            &[],
            "--ssh-port",
        ),
        ("z3", &["status"], &[("CONCURRENCY", "1025")], "CONCURRENCY"),
        (
            "z3",
            &["status"],
            &[("S3_TIMEOUT", "99999999999999")],
            "S3_TIMEOUT",
        ),
    ];
    for (program, args, extra, expected) in cases {
        let binary = match *program {
            "pput" => env!("CARGO_BIN_EXE_pput"),
            "z3_get" => env!("CARGO_BIN_EXE_z3_get"),
            "z3_mp_cleanup" => env!("CARGO_BIN_EXE_z3_mp_cleanup"),
            "z3_ssh_sync" => env!("CARGO_BIN_EXE_z3_ssh_sync"),
            _ => env!("CARGO_BIN_EXE_z3"),
        };
        let mut cmd = std::process::Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("Z3_CONFIG", "/dev/null")
            .env("BUCKET", "b")
            .env("FILESYSTEM", "pool/fs")
            // Nothing listens there: a run that got past the flags fails fast, not with 2.
            .env("S3_ENDPOINT", "http://127.0.0.1:9")
            .env("MAX_RETRIES", "1")
            .args(*args)
            .stdin(std::process::Stdio::null());
        for (key, value) in *extra {
            cmd.env(key, value);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{program} {args:?} {extra:?}: {err}"
        );
        assert!(err.contains(expected), "{program} {args:?}: {err}");
        assert!(!err.contains("panicked"), "{program} {args:?}: {err}");
        if *program != "z3_ssh_sync" && *program != "z3_mp_cleanup" {
            assert_eq!(err.lines().count(), 1, "{program} {args:?}: {err}");
        }
    }
}

//! Configuration: built-in defaults < `/etc/z3_backup/z3.conf` `[main]` < environment < `[fs:<dataset>]` < flags.
//!
//! This reproduces the original z3's sources and precedence (docs/compatibility.md, "Configuration and
//! precedence"), with figment doing the layering:
//! - the INI file's keys are case-insensitive; environment variables are read only by their exact upper-case names;
//! - the `[fs:<dataset>]` section overrides only `SNAPSHOT_PREFIX` and `COMPRESSOR` (and z3's own per-dataset keys,
//!   [`SECTION_KEYS`]), and it beats the environment,
//!   exactly as the original does (its README claims otherwise);
//! - `BUCKET`, `S3_KEY_ID` and `S3_SECRET` never come from flags, so secrets stay out of `ps` output.
//!
//! Raw values are plain strings; [`Settings::resolve`] turns them into typed settings with errors that name the key.

mod keys;
mod settings;
mod sources;

use std::path::PathBuf;

pub use keys::AgeSettings;
pub use settings::{MAX_CONCURRENCY, Settings};
pub use sources::{FlagOverrides, IniFile, RawConfig, layer};
pub use z3_s3::MAX_S3_TIMEOUT_SECS;

/// The system-wide configuration file of the original z3.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/z3_backup/z3.conf";

/// Every key z3 reads, by its upper-case name (environment variable and INI key).
pub const KEYS: &[&str] = &[
    "BUCKET",
    "S3_KEY_ID",
    "S3_SECRET",
    "S3_PREFIX",
    "FILESYSTEM",
    "SNAPSHOT_PREFIX",
    "COMPRESSOR",
    "GPG_RECIPIENT",
    "CONCURRENCY",
    "CHUNK_SIZE",
    "MEMORY_LIMIT",
    "MAX_RETRIES",
    "BWLIMIT",
    "S3_TIMEOUT",
    "S3_STORAGE_CLASS",
    "HOST",
    "S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "S3_REGION",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "S3_PATH_STYLE",
    "ZFS_COMMAND",
    "SEND_FLAGS",
    "AGE_RECIPIENTS",
    "AGE_RECIPIENTS_FILE",
    "AGE_IDENTITY_FILE",
    "AGE_PASSPHRASE_FILE",
    "SSE",
    "SSE_KMS_KEY_ID",
    "PRESERVE",
    "NAME_FORMAT",
    "TIME_ZONE",
    "WEEK_START",
    "MAX_CHAIN",
    "FULL_EVERY",
    "OBJECT_LOCK",
    "STORAGE_CLASS_YEARLY",
    "STORAGE_CLASS_MONTHLY",
    "STORAGE_CLASS_WEEKLY",
    "STORAGE_CLASS_DAILY",
    "STORAGE_CLASS_HOURLY",
];

/// The compressor of new backups unless configured: in-process zstd at level 3, chosen on
/// `cargo xtask bench codecs` (docs/codecs.md). `COMPRESSOR=pigz1` writes what the original z3
/// can restore.
pub const DEFAULT_COMPRESSOR: &str = "zstd";

/// Keys a `[fs:<dataset>]` section may override (docs/compatibility.md, "Configuration and precedence").
pub const SECTION_KEYS: &[&str] = &[
    "SNAPSHOT_PREFIX",
    "COMPRESSOR",
    "SEND_FLAGS",
    "MEMORY_LIMIT",
    "PRESERVE",
    "NAME_FORMAT",
    "MAX_CHAIN",
    "FULL_EVERY",
    "OBJECT_LOCK",
    "STORAGE_CLASS_YEARLY",
    "STORAGE_CLASS_MONTHLY",
    "STORAGE_CLASS_WEEKLY",
    "STORAGE_CLASS_DAILY",
    "STORAGE_CLASS_HOURLY",
];

/// A configuration problem: always a usage error (exit code 2), naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read or parsed.
    #[error("cannot read config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong (with the line, when the parser knows it).
        message: String,
    },
    /// A required key is unset.
    #[error(
        "{key} is not set: add `{key} = <name>` to the [main] section of {DEFAULT_CONFIG_PATH} (or of the file --config or Z3_CONFIG names), or set {key} in the environment"
    )]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A key has a value that does not parse.
    #[error("invalid {key} '{value}': {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The offending value.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A rule whose own message names the key and value (`MAX_CHAIN`, `FULL_EVERY`).
    #[error("invalid {0}")]
    Rule(String),
    /// Figment failed to merge the layers.
    #[error("invalid configuration: {0}")]
    Figment(String),
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::settings::*;
    use super::sources::*;
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const CONF: &str = "[main]\nBUCKET=from-file\nFILESYSTEM=pool/fs\nsnapshot_prefix=file-prefix\nCOMPRESSOR=pigz4\nS3_PREFIX=file/\n\n[fs:pool/fs]\nSNAPSHOT_PREFIX=section-prefix\nCONCURRENCY=2\n\n[fs:tank/ham]\nSNAPSHOT_PREFIX=weekly-non-spam\nCOMPRESSOR=none\n";

    #[test]
    fn defaults_apply_without_any_source() {
        let raw = layer(&IniFile::default(), env(&[]), &FlagOverrides::default()).unwrap();
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("zfs-auto-snap:daily"));
        // z3's default is zstd (docs/codecs.md); the original's was pigz1.
        assert_eq!(raw.compressor.as_deref(), Some("zstd"));
        assert_eq!(raw.s3_prefix.as_deref(), Some("z3-backup/"));
        assert_eq!(raw.concurrency.as_deref(), Some("32"));
        assert_eq!(raw.s3_storage_class.as_deref(), Some("STANDARD_IA"));
        assert!(raw.bucket.is_none());
    }

    #[test]
    fn section_beats_environment_which_beats_main() {
        // docs/compatibility.md, "Configuration and precedence": with SNAPSHOT_PREFIX exported and
        // [fs:pool/fs] setting it, the section wins.
        let file = IniFile::parse(CONF, None).unwrap();
        let raw = layer(
            &file,
            env(&[("SNAPSHOT_PREFIX", "env-prefix"), ("BUCKET", "from-env")]),
            &FlagOverrides::default(),
        )
        .unwrap();
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("section-prefix"));
        assert_eq!(raw.bucket.as_deref(), Some("from-env"));
        // Other keys of a section are ignored, as in the original.
        assert_eq!(raw.concurrency.as_deref(), Some("32"));
        // COMPRESSOR comes from [main] since the section does not set it.
        assert_eq!(raw.compressor.as_deref(), Some("pigz4"));
    }

    #[test]
    fn flags_beat_everything_and_pick_the_section() {
        let file = IniFile::parse(CONF, None).unwrap();
        let flags = FlagOverrides {
            filesystem: Some("tank/ham".into()),
            ..FlagOverrides::default()
        };
        let raw = layer(&file, env(&[("FILESYSTEM", "pool/fs")]), &flags).unwrap();
        assert_eq!(raw.filesystem.as_deref(), Some("tank/ham"));
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("weekly-non-spam"));
        assert_eq!(raw.compressor.as_deref(), Some("none"));

        let flags = FlagOverrides {
            snapshot_prefix: Some("cli".into()),
            compressor: Some("pigz1".into()),
            ..FlagOverrides::default()
        };
        let raw = layer(&file, env(&[]), &flags).unwrap();
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("cli"));
        assert_eq!(raw.compressor.as_deref(), Some("pigz1"));
    }

    #[test]
    fn sse_comes_from_the_file_or_the_environment_and_is_checked() {
        let resolve = |file: &str, vars: &[(&str, &str)]| {
            let file = IniFile::parse(file, None).unwrap();
            Settings::resolve(layer(&file, env(vars), &FlagOverrides::default()).unwrap())
        };
        let s = resolve("[main]\nBUCKET=b\nSSE=AES256\n", &[]).unwrap();
        assert_eq!(s.s3.sse, Some(z3_s3::Sse::Aes256));
        let s = resolve(
            "[main]\nBUCKET=b\n",
            &[("SSE", "aws:kms"), ("SSE_KMS_KEY_ID", "k9")],
        )
        .unwrap();
        assert_eq!(
            s.s3.sse,
            Some(z3_s3::Sse::Kms {
                key_id: Some("k9".into())
            })
        );
        assert_eq!(resolve("[main]\nBUCKET=b\n", &[]).unwrap().s3.sse, None);
        let err = resolve("[main]\nBUCKET=b\nSSE=des\n", &[]).unwrap_err();
        assert!(err.to_string().starts_with("invalid SSE 'des'"), "{err}");
        let err = resolve("[main]\nBUCKET=b\nSSE_KMS_KEY_ID=k9\n", &[]).unwrap_err();
        assert!(err.to_string().contains("SSE_KMS_KEY_ID"), "{err}");
    }

    #[test]
    fn retention_settings_resolve_per_dataset_and_name_the_key_at_fault() {
        let file = "[main]\nBUCKET=b\nFILESYSTEM=pool/fs\nPRESERVE=1y 12m\n[fs:pool/fs]\nPRESERVE=14d 24h\nNAME_FORMAT=sanoid\n";
        let resolve = |file: &str, vars: &[(&str, &str)]| {
            let file = IniFile::parse(file, None).unwrap();
            Settings::resolve(layer(&file, env(vars), &FlagOverrides::default()).unwrap())
        };
        let s = resolve(
            file,
            &[("TIME_ZONE", "Europe/Berlin"), ("WEEK_START", "sun")],
        )
        .unwrap();
        let r = s.retention.unwrap();
        assert_eq!(r.policy.to_string(), "14d 24h", "the section's policy wins");
        assert!(r.name_format.is_some());
        assert_eq!(r.calendar.week_start, jiff::civil::Weekday::Sunday);
        assert_eq!(r.calendar.time_zone.iana_name(), Some("Europe/Berlin"));
        let posix = resolve(file, &[("TIME_ZONE", "EST5EDT,M3.2.0,M11.1.0")]).unwrap();
        assert!(posix.retention.is_some());
        assert!(
            resolve("[main]\nBUCKET=b\n", &[])
                .unwrap()
                .retention
                .is_none()
        );
        for (key, value) in [
            ("PRESERVE", "3x"),
            ("TIME_ZONE", "Mars/Olympus"),
            ("WEEK_START", "funday"),
            ("NAME_FORMAT", "snap-%Q"),
            ("OBJECT_LOCK", "forever"),
        ] {
            let mut vars = vec![("PRESERVE", "3d")];
            vars.retain(|(k, _)| *k != key);
            vars.push((key, value));
            let err = resolve("[main]\nBUCKET=b\n", &vars)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("invalid {key} '{value}'")),
                "{err}"
            );
        }
        // OBJECT_LOCK: per dataset, any case; without PRESERVE, refused naming it.
        let locked = "[main]\nBUCKET=b\nFILESYSTEM=pool/fs\n[fs:pool/fs]\nPRESERVE=14d\nOBJECT_LOCK=Compliance\n";
        let r = resolve(locked, &[]).unwrap().retention.unwrap();
        assert_eq!(r.object_lock, Some(z3_s3::RetentionMode::Compliance));
        let err = resolve("[main]\nBUCKET=b\nOBJECT_LOCK=governance\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid OBJECT_LOCK 'governance': needs PRESERVE"),
            "{err}"
        );
    }

    /// The packaged `/etc/z3_backup/z3.conf` names every key (commented out, with its default)
    /// and parses as it ships.
    #[test]
    fn the_packaged_config_file_lists_every_key_and_parses() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../packaging/z3.conf"
        ));
        for key in KEYS {
            assert!(text.contains(&format!("\n#{key} =")), "{key} is missing");
        }
        let file = IniFile::parse(text, None).unwrap();
        let raw = layer(&file, env(&[]), &FlagOverrides::default()).unwrap();
        assert!(raw.bucket.is_none(), "everything is commented out");
        // Uncommented, the listed values are the built-in defaults.
        let live: String = text
            .lines()
            .map(|l| {
                l.strip_prefix('#')
                    .filter(|l| l.contains(" = ") || l.starts_with('['))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file = IniFile::parse(&live.replace("#BUCKET =", "BUCKET = b"), None).unwrap();
        let raw = layer(&file, env(&[("BUCKET", "b")]), &FlagOverrides::default()).unwrap();
        assert_eq!(raw.snapshot_prefix.as_deref(), Some("zfs-auto-snap:daily"));
        assert_eq!(raw.concurrency.as_deref(), Some("32"));
    }

    /// The reference table (keys.tsv, from which docs/configuration.md is generated) names
    /// exactly the keys z3 reads, in their order, and the built-in defaults it states are the
    /// code's.
    #[test]
    fn the_reference_table_matches_the_keys_and_defaults() {
        let table: Vec<(&str, &str)> = include_str!("keys.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let mut cells = l.split('\t');
                (cells.next().unwrap(), cells.next().unwrap())
            })
            .collect();
        let keys: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, KEYS);
        for (key, value) in defaults() {
            let key = key.to_ascii_uppercase();
            let Some((_, stated)) = table.iter().find(|(k, _)| *k == key) else {
                panic!("{key} has a default but no row");
            };
            let value = value.as_str().unwrap();
            assert!(
                stated.contains(&format!("`{value}`")),
                "{key}: {stated} is not `{value}`"
            );
        }
    }

    #[test]
    fn environment_names_are_case_sensitive() {
        let raw = layer(
            &IniFile::default(),
            env(&[("bucket", "lower"), ("Bucket", "mixed")]),
            &FlagOverrides::default(),
        )
        .unwrap();
        assert!(raw.bucket.is_none());
    }

    #[test]
    // figment::Error is large; that is the test helper's signature, not ours.
    #[allow(clippy::result_large_err)]
    fn figment_jail_reads_the_process_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BUCKET", "jailed");
            jail.set_env("CONCURRENCY", "7");
            let raw = layer(
                &IniFile::default(),
                std::env::vars(),
                &FlagOverrides::default(),
            )
            .map_err(|e| e.to_string())?;
            let settings = Settings::resolve(raw).map_err(|e| e.to_string())?;
            assert_eq!(settings.bucket, "jailed");
            assert_eq!(settings.transfer.concurrency, 7);
            Ok(())
        });
    }

    #[test]
    fn malformed_file_names_the_file() {
        let err = IniFile::parse("[main\nBUCKET=x\n", Some(Path::new("/etc/z3.conf"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read config file /etc/z3.conf:"),
            "{err}"
        );
    }

    #[test]
    fn missing_default_file_is_fine_but_an_explicit_one_is_not() {
        assert!(IniFile::load(Path::new("/nonexistent/z3.conf"), false).is_ok());
        let err = IniFile::load(Path::new("/nonexistent/z3.conf"), true).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/z3.conf"), "{err}");
    }

    fn resolve(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::resolve(layer(
            &IniFile::default(),
            env(pairs),
            &FlagOverrides::default(),
        )?)
    }

    #[test]
    fn resolve_checks_required_and_typed_keys() {
        let err = resolve(&[]).unwrap_err();
        assert!(err.to_string().starts_with("BUCKET is not set"), "{err}");
        let err = resolve(&[("BUCKET", "b"), ("S3_KEY_ID", "AKIA")]).unwrap_err();
        assert!(err.to_string().starts_with("S3_SECRET is not set"), "{err}");
        let err = resolve(&[("BUCKET", "b"), ("CONCURRENCY", "lots")]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid CONCURRENCY 'lots'"),
            "{err}"
        );
        let err = resolve(&[("BUCKET", "b"), ("CHUNK_SIZE", "1Q")]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid CHUNK_SIZE '1Q'"),
            "{err}"
        );
        let err = resolve(&[("BUCKET", "b"), ("FILESYSTEM", "pool/bad name!")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid FILESYSTEM 'pool/bad name!': invalid character '!' in name"
        );
    }

    #[test]
    fn endpoint_sources_and_path_style() {
        let s = resolve(&[("BUCKET", "b")]).unwrap();
        assert_eq!(s.s3.endpoint, None);
        assert!(!s.s3.force_path_style);
        let s = resolve(&[("BUCKET", "b"), ("HOST", "s3.wasabisys.com")]).unwrap();
        assert_eq!(s.s3.endpoint.as_deref(), Some("https://s3.wasabisys.com"));
        assert!(s.s3.force_path_style);
        let s = resolve(&[
            ("BUCKET", "b"),
            ("HOST", "ignored.example"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("S3_PATH_STYLE", "false"),
        ])
        .unwrap();
        assert_eq!(s.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(!s.s3.force_path_style);
        let s = resolve(&[("BUCKET", "b"), ("AWS_ENDPOINT_URL", "http://localhost:1")]).unwrap();
        assert_eq!(s.s3.endpoint.as_deref(), Some("http://localhost:1"));
        assert_eq!(s.s3.region.as_deref(), Some("us-east-1"));
        let s = resolve(&[("BUCKET", "b"), ("AWS_REGION", "eu-west-3")]).unwrap();
        assert_eq!(s.s3.region.as_deref(), Some("eu-west-3"));
        let s = resolve(&[
            ("BUCKET", "b"),
            ("S3_REGION", "eu-central-2"),
            ("AWS_REGION", "x"),
        ])
        .unwrap();
        assert_eq!(s.s3.region.as_deref(), Some("eu-central-2"));
        // Plain AWS without a region: the SDK's chain decides.
        assert_eq!(resolve(&[("BUCKET", "b")]).unwrap().s3.region, None);
    }

    #[test]
    fn s3_timeout_sets_the_attempt_timeout_of_small_requests() {
        use std::time::Duration;
        let s = resolve(&[("BUCKET", "b")]).unwrap();
        assert_eq!(s.s3.operation_timeout, Some(Duration::from_mins(1)));
        let s = resolve(&[("BUCKET", "b"), ("S3_TIMEOUT", "2")]).unwrap();
        assert_eq!(s.s3.operation_timeout, Some(Duration::from_secs(2)));
        let file = IniFile::parse("[main]\nBUCKET=b\ns3_timeout=7\n", None).unwrap();
        let raw = layer(&file, env(&[]), &FlagOverrides::default()).unwrap();
        let s = Settings::resolve(raw).unwrap();
        assert_eq!(s.s3.operation_timeout, Some(Duration::from_secs(7)));
        for bad in ["0", "1.5", "soon"] {
            let err = resolve(&[("BUCKET", "b"), ("S3_TIMEOUT", bad)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid S3_TIMEOUT '{bad}'")),
                "{err}"
            );
        }
    }

    #[test]
    fn send_flags_are_set_per_dataset_and_checked() {
        use z3_engine::SendFlagChoice;
        let conf = "[main]\nBUCKET=b\nSEND_FLAGS=auto\n\n[fs:tank/secret]\nSEND_FLAGS=w\n";
        let file = IniFile::parse(conf, None).unwrap();
        let resolved = |fs: &str| {
            let flags = FlagOverrides {
                filesystem: Some(fs.into()),
                ..FlagOverrides::default()
            };
            Settings::resolve(layer(&file, env(&[]), &flags).unwrap()).unwrap()
        };
        assert_eq!(resolved("tank/data").send_flags, SendFlagChoice::Auto);
        assert_eq!(
            resolved("tank/secret").send_flags,
            SendFlagChoice::Exactly(z3_zfs::SendFlags::from_metadata("w").unwrap())
        );
        assert_eq!(
            resolve(&[("BUCKET", "b")]).unwrap().send_flags,
            SendFlagChoice::Plain
        );
        let err = resolve(&[("BUCKET", "b"), ("SEND_FLAGS", "-R")]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid SEND_FLAGS '-R'"),
            "{err}"
        );
    }

    #[test]
    fn bwlimit_comes_from_the_flag_then_the_environment_then_the_file() {
        assert_eq!(
            resolve(&[("BUCKET", "b")]).unwrap().s3.bandwidth_limit,
            None
        );
        let s = resolve(&[("BUCKET", "b"), ("BWLIMIT", "10M")]).unwrap();
        assert_eq!(s.s3.bandwidth_limit, Some(10 << 20));
        let s = resolve(&[("BUCKET", "b"), ("BWLIMIT", "off")]).unwrap();
        assert_eq!(s.s3.bandwidth_limit, None);
        let file = IniFile::parse("[main]\nBUCKET=b\nbwlimit=512K\n", None).unwrap();
        let raw = layer(&file, env(&[]), &FlagOverrides::default()).unwrap();
        assert_eq!(
            Settings::resolve(raw).unwrap().s3.bandwidth_limit,
            Some(512 << 10)
        );
        let cli =
            <crate::args::Cli as clap::Parser>::parse_from(["z3", "status", "--bwlimit", "2M"]);
        let raw = layer(&file, env(&[("BWLIMIT", "1G")]), &cli.overrides()).unwrap();
        assert_eq!(
            Settings::resolve(raw).unwrap().s3.bandwidth_limit,
            Some(2 << 20)
        );
        for bad in ["fast", "100", "-1M"] {
            let err = resolve(&[("BUCKET", "b"), ("BWLIMIT", bad)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid BWLIMIT '{bad}'")),
                "{err}"
            );
        }
    }

    #[test]
    fn memory_limit_comes_from_the_environment_or_a_section_and_bounds_chunk_size() {
        let s = resolve(&[("BUCKET", "b")]).unwrap();
        assert_eq!(
            (s.transfer.memory_limit, s.transfer.chunk_size),
            (1 << 30, 256 << 20)
        );
        // An unset CHUNK_SIZE follows a small budget down.
        let s = resolve(&[("BUCKET", "b"), ("MEMORY_LIMIT", "100M")]).unwrap();
        assert_eq!(
            (s.transfer.memory_limit, s.transfer.chunk_size),
            (100 << 20, 50 << 20)
        );
        let err = resolve(&[
            ("BUCKET", "b"),
            ("MEMORY_LIMIT", "100M"),
            ("CHUNK_SIZE", "64M"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid CHUNK_SIZE '64M'")
                && err.to_string().contains("MEMORY_LIMIT"),
            "{err}"
        );
        let err = resolve(&[("BUCKET", "b"), ("MEMORY_LIMIT", "8M")]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid MEMORY_LIMIT '8M'"),
            "{err}"
        );
        let file = IniFile::parse(
            "[main]\nBUCKET=b\nMEMORY_LIMIT=600M\n[fs:tank/big]\nMEMORY_LIMIT=4G\n",
            None,
        )
        .unwrap();
        let flags = FlagOverrides {
            filesystem: Some("tank/big".into()),
            ..FlagOverrides::default()
        };
        let s = Settings::resolve(layer(&file, env(&[]), &flags).unwrap()).unwrap();
        assert_eq!(
            (s.transfer.memory_limit, s.transfer.chunk_size),
            (4 << 30, 256 << 20)
        );
        let raw = layer(&file, env(&[]), &FlagOverrides::default()).unwrap();
        assert_eq!(
            Settings::resolve(raw).unwrap().transfer.memory_limit,
            600 << 20
        );
    }

    #[test]
    fn settings_debug_never_shows_the_secret() {
        let s = resolve(&[
            ("BUCKET", "b"),
            ("S3_KEY_ID", "AKIAEXAMPLE"),
            ("S3_SECRET", "very-secret-value"),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }

    #[test]
    fn compressor_sections_become_argument_vectors() {
        let ini = IniFile::parse(
            "[main]\nBUCKET=b\n\n[compressor:LZ4]\nCOMPRESS = lz4 -1 -c\ndecompress = lz4 -d -c\n\n\
             [compressor:xz-fast]\nCOMPRESS = /opt/bin/xz -0 \"--memlimit=1 GiB\"\nDECOMPRESS = xz -d\n",
            None,
        )
        .unwrap();
        let compressors = ini.compressors().unwrap();
        let lz4 = compressors.parse("lz4", "").unwrap();
        assert_eq!(lz4.metadata_name(), Some("lz4"));
        let Some(z3_codec::Stage::External(encoder)) = lz4.encoder() else {
            panic!("a program");
        };
        assert_eq!(
            (encoder.program(), encoder.args()),
            ("lz4", &["-1".to_owned(), "-c".to_owned()][..])
        );
        let xz = compressors.parse("XZ-FAST", "").unwrap();
        let Some(z3_codec::Stage::External(encoder)) = xz.encoder() else {
            panic!("a program");
        };
        assert_eq!(encoder.args(), ["-0", "--memlimit=1 GiB"]);
        let decoder = compressors.decoder_for(Some("xz-fast")).unwrap().unwrap();
        assert_eq!(z3_codec::Codec::describe(&decoder), "xz -d");
    }

    #[test]
    fn bad_compressor_sections_are_named() {
        for (text, expect) in [
            ("[compressor:pigz1]\nCOMPRESS=a\nDECOMPRESS=b\n", "built-in"),
            (
                "[compressor:zstd-long]\nCOMPRESS=a\nDECOMPRESS=b\n",
                "reserved",
            ),
            ("[compressor:lz4]\nCOMPRESS=lz4\n", "DECOMPRESS"),
            (
                "[compressor:lz4]\nCOMPRESS=lz4 'open\nDECOMPRESS=x\n",
                "cannot split COMPRESS",
            ),
            (
                "[compressor:a b]\nCOMPRESS=x\nDECOMPRESS=y\n",
                "ASCII letters",
            ),
            (
                "[compressor:lz4]\nCOMPRESS=x\nDECOMPRESS=y\nLEVEL=3\n",
                "unknown key LEVEL",
            ),
        ] {
            let err = IniFile::parse(text, None)
                .unwrap()
                .compressors()
                .unwrap_err();
            let message = err.to_string();
            assert!(message.contains("[compressor:NAME]"), "{message}");
            assert!(message.contains(expect), "{text:?}: {message}");
        }
    }

    #[test]
    fn age_settings_come_from_every_source_and_files_are_read_lazily() {
        let file = IniFile::parse(
            "[main]\nBUCKET=b\nAGE_IDENTITY_FILE=/nonexistent/key.txt\n",
            None,
        )
        .unwrap();
        let key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let raw = layer(
            &file,
            env(&[("AGE_RECIPIENTS", &format!("{key}, {key}"))]),
            &FlagOverrides::default(),
        )
        .unwrap();
        let settings = Settings::resolve(raw).unwrap();
        assert_eq!(settings.age.recipients, [key, key]);
        assert!(settings.age.recipients().unwrap().is_some());
        // The identity file is only read by restores: a backup host needs no secret key.
        let err = settings.age.identities().unwrap_err().to_string();
        assert!(
            err.contains("AGE_IDENTITY_FILE") && err.contains("/nonexistent/key.txt"),
            "{err}"
        );

        let raw = layer(
            &IniFile::default(),
            env(&[("BUCKET", "b"), ("AGE_RECIPIENTS", "age1bogus")]),
            &FlagOverrides::default(),
        )
        .unwrap();
        let err = Settings::resolve(raw)
            .unwrap()
            .age
            .recipients()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid AGE_RECIPIENTS 'age1bogus'"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "s3cret words\nignored\n").unwrap();
        let both = AgeSettings {
            recipients: vec![key.into()],
            passphrase_file: Some(pass.clone()),
            ..AgeSettings::default()
        };
        assert!(
            both.recipients()
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let only = AgeSettings {
            passphrase_file: Some(pass),
            ..AgeSettings::default()
        };
        assert_eq!(only.recipients().unwrap().unwrap().describe(), "passphrase");
        assert_eq!(only.identities().unwrap().unwrap().describe(), "passphrase");
        assert!(AgeSettings::default().recipients().unwrap().is_none());
        assert!(AgeSettings::default().identities().unwrap().is_none());
    }

    #[test]
    fn a_secret_key_in_age_recipients_is_refused_and_never_echoed() {
        // A syntactically valid secret key (not one anyone uses).
        let secret = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
        let public = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let raw = layer(
            &IniFile::default(),
            env(&[
                ("BUCKET", "b"),
                ("AGE_RECIPIENTS", &format!("{public} {secret}")),
            ]),
            &FlagOverrides::default(),
        )
        .unwrap();
        let settings = Settings::resolve(raw).unwrap();
        // Echoed the whole value (the secret key) before.
        let err = settings.age.recipients().unwrap_err().to_string();
        assert!(err.starts_with("invalid AGE_RECIPIENTS"), "{err}");
        assert!(err.contains("is an age secret key"), "{err}");
        assert!(!err.contains(&secret[15..]), "{err}");
        assert!(err.contains(public), "{err}");
    }

    #[test]
    fn no_child_process_inherits_a_secret_setting() {
        // z3-zfs (zfs, ssh, sudo) and z3-codec (compressors, gpg) remove the same names.
        assert_eq!(z3_zfs::CHILD_ENV_REMOVED, z3_codec::CHILD_ENV_REMOVED);
        for key in KEYS {
            let secret =
                key.contains("SECRET") || key.contains("KEY_ID") || key.starts_with("AGE_");
            if secret {
                assert!(
                    z3_zfs::CHILD_ENV_REMOVED.contains(key),
                    "{key} reaches children"
                );
            }
        }
    }
}

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

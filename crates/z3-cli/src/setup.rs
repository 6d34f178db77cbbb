//! The one setup path of the five binaries: the configuration file, the layered raw values,
//! the typed settings and the S3 client. Every binary reads its configuration the same way
//! (docs/compatibility.md, "Configuration and precedence").

use std::path::Path;

use anyhow::{Context, Result};
use z3_s3::AwsStore;

use crate::config::{DEFAULT_CONFIG_PATH, FlagOverrides, IniFile, RawConfig, Settings, layer};

/// The configuration file: `path` if given (it must exist), else `/etc/z3_backup/z3.conf` if
/// it exists.
///
/// # Errors
/// An unreadable or malformed file, or a missing one that was asked for.
pub fn config_file(path: Option<&Path>) -> Result<IniFile> {
    Ok(match path {
        Some(path) => IniFile::load(path, true)?,
        None => IniFile::load(Path::new(DEFAULT_CONFIG_PATH), false)?,
    })
}

/// Raw values from the file, the process environment and `flags`, layered.
///
/// # Errors
/// As [`config_file`], and a layering failure.
pub fn raw_config(path: Option<&Path>, flags: &FlagOverrides) -> Result<(IniFile, RawConfig)> {
    let file = config_file(path)?;
    let raw = layer(&file, std::env::vars(), flags)?;
    Ok((file, raw))
}

/// Typed settings from the file and the environment, without flag overrides (`pput`, `z3_get`,
/// `z3_mp_cleanup`).
///
/// # Errors
/// As [`raw_config`], and a missing or invalid key.
pub fn settings(path: Option<&Path>) -> Result<Settings> {
    let (_, raw) = raw_config(path, &FlagOverrides::default())?;
    Ok(Settings::resolve(raw)?)
}

/// The S3 client for `settings` (no request is made yet).
///
/// # Errors
/// The client cannot be built (e.g. an unusable endpoint).
pub async fn connect(settings: &Settings) -> Result<AwsStore> {
    AwsStore::connect(settings.s3.clone())
        .await
        .context("cannot set up the S3 client")
}

/// The status cache's files for `settings`' endpoint, in `$XDG_CACHE_HOME/z3`, `/var/cache/z3`
/// (root) or `~/.cache/z3` ([`z3_engine::meta_cache::default_dir`]); none without a place.
#[must_use]
pub fn meta_cache(settings: &Settings) -> Option<std::sync::Arc<dyn z3_engine::MetaCache>> {
    let (xdg, home) = (std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"));
    z3_engine::meta_cache::user_cache(xdg, home, settings.s3.endpoint.as_deref())
}

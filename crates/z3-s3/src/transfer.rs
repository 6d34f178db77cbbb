//! [`TransferSettings`]: `CONCURRENCY`, `CHUNK_SIZE` and `MAX_RETRIES` as the configuration spells
//! them, checked into a [`Transfer`] (the keys' meaning is in docs/configuration.md).

use crate::{MAX_PART_SIZE, RetryConfig};

/// The most parts in flight (`CONCURRENCY`, `--concurrency`).
pub const MAX_CONCURRENCY: usize = 1024;

/// The transfer keys as configured (each `None` when unset, for its default).
#[derive(Debug, Default, Clone, Copy)]
pub struct TransferSettings<'a> {
    /// `CONCURRENCY`: parts in flight, 1 to [`MAX_CONCURRENCY`] (default 32).
    pub concurrency: Option<&'a str>,
    /// `CHUNK_SIZE`: the part size without an estimate, at most 5G (default 256M).
    pub chunk_size: Option<&'a str>,
    /// `MAX_RETRIES`: attempts per request, at least 1 (default 3).
    pub max_retries: Option<&'a str>,
}

/// How uploads and downloads run, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Parts in flight.
    pub concurrency: usize,
    /// The part size without an estimate.
    pub chunk_size: u64,
    /// The retry policy, with `MAX_RETRIES` attempts.
    pub retry: RetryConfig,
}

impl Transfer {
    /// `settings`, checked.
    ///
    /// # Errors
    /// The key at fault, its value and why.
    pub fn from_settings(
        settings: &TransferSettings<'_>,
    ) -> Result<Self, (&'static str, String, String)> {
        let invalid = |key, value: &str, why: String| (key, value.to_owned(), why);
        let text = settings.concurrency.unwrap_or("32");
        let concurrency = match text.trim().parse::<usize>() {
            Ok(n @ 1..=MAX_CONCURRENCY) => n,
            Ok(_) => {
                let why = format!("must be between 1 and {MAX_CONCURRENCY}");
                return Err(invalid("CONCURRENCY", text, why));
            }
            Err(e) => return Err(invalid("CONCURRENCY", text, e.to_string())),
        };
        let text = settings.chunk_size.unwrap_or("256M");
        let chunk_size =
            crate::parse_size(text).map_err(|e| invalid("CHUNK_SIZE", text, e.to_string()))?;
        if chunk_size > MAX_PART_SIZE {
            let why = "must be at most 5G (S3's largest part)".to_owned();
            return Err(invalid("CHUNK_SIZE", text, why));
        }
        let text = settings.max_retries.unwrap_or("3");
        let max_attempts = match text.trim().parse::<u32>() {
            Ok(0) => {
                let why = "must be at least 1 (it counts attempts)".to_owned();
                return Err(invalid("MAX_RETRIES", text, why));
            }
            Ok(n) => n,
            Err(e) => return Err(invalid("MAX_RETRIES", text, e.to_string())),
        };
        Ok(Self {
            concurrency,
            chunk_size,
            retry: RetryConfig {
                max_attempts,
                ..RetryConfig::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: &str, s: &str, r: &str) -> Result<Transfer, (&'static str, String, String)> {
        Transfer::from_settings(&TransferSettings {
            concurrency: Some(c),
            chunk_size: Some(s),
            max_retries: Some(r),
        })
    }

    #[test]
    fn defaults_and_bounds() {
        let t = Transfer::from_settings(&TransferSettings::default()).unwrap();
        assert_eq!(
            (t.concurrency, t.chunk_size, t.retry.max_attempts),
            (32, 256 << 20, 3)
        );
        let t = check(" 8 ", "5G", "1").unwrap();
        assert_eq!(
            (t.concurrency, t.chunk_size, t.retry.max_attempts),
            (8, 5 << 30, 1)
        );
        for (c, s, r, key) in [
            ("0", "8M", "3", "CONCURRENCY"),
            ("1025", "8M", "3", "CONCURRENCY"),
            ("many", "8M", "3", "CONCURRENCY"),
            ("4", "6G", "3", "CHUNK_SIZE"),
            ("4", "big", "3", "CHUNK_SIZE"),
            ("4", "8M", "0", "MAX_RETRIES"),
            ("4", "8M", "-1", "MAX_RETRIES"),
        ] {
            let err = check(c, s, r).unwrap_err();
            assert_eq!(err.0, key, "{c} {s} {r}: {err:?}");
        }
    }
}

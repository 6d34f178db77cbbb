//! [`TransferSettings`]: `CONCURRENCY`, `CHUNK_SIZE`, `MAX_RETRIES` and `MEMORY_LIMIT` as the
//! configuration spells them, checked into a [`Transfer`] (the keys' meaning is in
//! docs/configuration.md).

use crate::{DEFAULT_MEMORY_LIMIT, MAX_PART_SIZE, MIN_MEMORY_LIMIT, RetryConfig};

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
    /// `MEMORY_LIMIT`: the most part data held at once, at least 10M (default 1G). An unset
    /// `CHUNK_SIZE` defaults to at most half of it; a set one above half is refused.
    pub memory_limit: Option<&'a str>,
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
    /// The memory budget of every upload and download, in bytes.
    pub memory_limit: u64,
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
        let memory_limit = match settings.memory_limit {
            None => DEFAULT_MEMORY_LIMIT,
            Some(text) => match crate::parse_size(text) {
                Ok(limit) if limit >= MIN_MEMORY_LIMIT => limit,
                Ok(_) => {
                    let why = "must be at least 10M (two 5M parts: one uploading, one filling)";
                    return Err(invalid("MEMORY_LIMIT", text, why.to_owned()));
                }
                Err(e) => return Err(invalid("MEMORY_LIMIT", text, e.to_string())),
            },
        };
        let chunk_size = match settings.chunk_size {
            None => (256 << 20).min(memory_limit / 2),
            Some(text) => {
                let size = crate::parse_size(text)
                    .map_err(|e| invalid("CHUNK_SIZE", text, e.to_string()))?;
                if size > MAX_PART_SIZE {
                    let why = "must be at most 5G (S3's largest part)".to_owned();
                    return Err(invalid("CHUNK_SIZE", text, why));
                }
                check_part_budget(size, memory_limit)
                    .map_err(|why| invalid("CHUNK_SIZE", text, why))?;
                size
            }
        };
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
            memory_limit,
        })
    }
}

/// A part (or range) of `size` bytes must leave room for a second one within `memory_limit`
/// (ADR 5): one uploads while the next is read.
///
/// # Errors
/// Why not, naming the budget.
pub fn check_part_budget(size: u64, memory_limit: u64) -> Result<(), String> {
    if size > memory_limit / 2 {
        return Err(format!(
            "more than half of MEMORY_LIMIT ({memory_limit} bytes): two parts must fit; lower it or raise MEMORY_LIMIT"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: &str, s: &str, r: &str) -> Result<Transfer, (&'static str, String, String)> {
        Transfer::from_settings(&TransferSettings {
            concurrency: Some(c),
            chunk_size: Some(s),
            max_retries: Some(r),
            memory_limit: None,
        })
    }

    #[test]
    fn defaults_and_bounds() {
        let t = Transfer::from_settings(&TransferSettings::default()).unwrap();
        assert_eq!(
            (t.concurrency, t.chunk_size, t.retry.max_attempts),
            (32, 256 << 20, 3)
        );
        let t = check(" 8 ", "512M", "1").unwrap();
        assert_eq!(
            (t.concurrency, t.chunk_size, t.retry.max_attempts),
            (8, 512 << 20, 1)
        );
        for (c, s, r, key) in [
            ("0", "8M", "3", "CONCURRENCY"),
            ("1025", "8M", "3", "CONCURRENCY"),
            ("many", "8M", "3", "CONCURRENCY"),
            ("4", "6G", "3", "CHUNK_SIZE"),
            ("4", "big", "3", "CHUNK_SIZE"),
            ("4", "8M", "0", "MAX_RETRIES"),
            ("4", "8M", "-1", "MAX_RETRIES"),
            ("4", "513M", "3", "CHUNK_SIZE"),
        ] {
            let err = check(c, s, r).unwrap_err();
            assert_eq!(err.0, key, "{c} {s} {r}: {err:?}");
        }
    }

    #[test]
    fn memory_limit_bounds_the_chunk_size() {
        let with = |chunk, limit| {
            Transfer::from_settings(&TransferSettings {
                chunk_size: chunk,
                memory_limit: Some(limit),
                ..TransferSettings::default()
            })
        };
        let t = Transfer::from_settings(&TransferSettings::default()).unwrap();
        assert_eq!(t.memory_limit, 1 << 30);
        // An unset CHUNK_SIZE follows the budget down; a set one must fit twice.
        let t = with(None, "100M").unwrap();
        assert_eq!((t.chunk_size, t.memory_limit), (50 << 20, 100 << 20));
        assert_eq!(with(None, "4G").unwrap().chunk_size, 256 << 20);
        assert_eq!(with(Some("2G"), "4G").unwrap().chunk_size, 2 << 30);
        let err = with(Some("64M"), "100M").unwrap_err();
        assert_eq!(err.0, "CHUNK_SIZE");
        assert!(err.2.contains("MEMORY_LIMIT"), "{err:?}");
        for bad in ["9M", "0", "lots", "1.5G"] {
            assert_eq!(with(None, bad).unwrap_err().0, "MEMORY_LIMIT", "{bad}");
        }
        assert_eq!(with(None, "10M").unwrap().chunk_size, 5 << 20);
    }
}

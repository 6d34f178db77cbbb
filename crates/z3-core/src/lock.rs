//! The backup lock's record: who holds it and until when. Pure: the caller supplies the clock.
//!
//! Two `z3 backup` runs for one bucket, prefix and dataset must not interleave: each would build
//! on a chain the other is changing. The lock is an S3 object created with `If-None-Match: *`
//! (the server lets one creator win), holding this record; its holder renews `expires` while it
//! works, so a lock whose holder died goes stale and can be taken over.

use std::fmt;

/// The content of a lock object, as `key=value` lines (readable with any S3 browser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// A random id of the holding run.
    pub owner: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When it was taken, seconds since the Unix epoch.
    pub acquired: u64,
    /// Until when it holds unless renewed, seconds since the Unix epoch.
    pub expires: u64,
}

/// A lock object whose content is not a [`LockRecord`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable lock record: {0}")]
pub struct LockParseError(String);

impl LockRecord {
    /// Whether the holder stopped renewing: `now` is past `expires`.
    #[must_use]
    pub fn is_stale(&self, now: u64) -> bool {
        now > self.expires
    }

    /// The object body.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!(
            "owner={}\nhost={}\npid={}\nacquired={}\nexpires={}\n",
            self.owner, self.host, self.pid, self.acquired, self.expires
        )
    }

    /// Parses an object body.
    ///
    /// # Errors
    /// [`LockParseError`] for a missing or malformed field.
    pub fn parse(text: &str) -> Result<Self, LockParseError> {
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(str::trim)
                .ok_or_else(|| LockParseError(format!("no {name}")))
        };
        let number = |name: &str| {
            field(name)?
                .parse::<u64>()
                .map_err(|_| LockParseError(format!("{name} is not a number")))
        };
        Ok(Self {
            owner: field("owner")?.to_owned(),
            host: field("host")?.to_owned(),
            pid: u32::try_from(number("pid")?)
                .map_err(|_| LockParseError("pid out of range".into()))?,
            acquired: number("acquired")?,
            expires: number("expires")?,
        })
    }
}

impl fmt::Display for LockRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host {} (pid {}), taken at {} and valid until {} (Unix time)",
            self.host, self.pid, self.acquired, self.expires
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LockRecord {
        LockRecord {
            owner: "a1b2".into(),
            host: "db-1".into(),
            pid: 4242,
            acquired: 1_700_000_000,
            expires: 1_700_000_900,
        }
    }

    #[test]
    fn round_trips_and_goes_stale_after_expiry() {
        let r = record();
        assert_eq!(LockRecord::parse(&r.to_text()).unwrap(), r);
        assert!(!r.is_stale(1_700_000_900));
        assert!(r.is_stale(1_700_000_901));
        assert!(r.to_string().contains("db-1 (pid 4242)"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "owner=x",
            "owner=x\nhost=h\npid=-1\nacquired=1\nexpires=2\n",
            "\u{0}\u{ff}",
        ] {
            assert!(LockRecord::parse(text).is_err(), "{text:?}");
        }
    }
}

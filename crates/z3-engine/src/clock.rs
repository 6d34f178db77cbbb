//! The wall clock, injected where decisions depend on it: whether a backup lock is stale, when
//! a renewed lock expires, which uploads the cleanup finds old enough.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tells the time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> SystemTime;

    /// Now, in whole seconds since the Unix epoch (0 before it).
    fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until moved (tests, simulations).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock showing `at`.
    #[must_use]
    pub fn new(at: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// A clock showing `value`: RFC 3339 (`2027-01-01T00:00:00Z`) or Unix seconds (z3's
    /// `Z3_NOW`).
    ///
    /// # Errors
    /// Why `value` is neither.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let secs = match value.parse::<i64>() {
            Ok(secs) => secs,
            Err(_) => value
                .parse::<jiff::Timestamp>()
                .map_err(|e| e.to_string())?
                .as_second(),
        };
        let secs = u64::try_from(secs).map_err(|_| "before 1970".to_owned())?;
        Ok(Self::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        ))
    }

    /// Moves it forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(100));
        assert_eq!(clock.unix_secs(), 100);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.unix_secs(), 105);
    }
}

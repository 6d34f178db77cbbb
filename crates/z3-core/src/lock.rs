//! The backup lock's record: who holds it and until when. Pure: the caller supplies the clock.
//!
//! Two `z3 backup` runs for one bucket, prefix and dataset must not interleave: each would build
//! on a chain the other is changing. The lock is an S3 object created with `If-None-Match: *`
//! (the server lets one creator win), holding this record; its holder renews `expires` while it
//! works, so a lock whose holder died goes stale and can be taken over.

use std::fmt::{self, Write as _};

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
    /// Which process on which machine holds it, when the holder could tell (records written
    /// before z3 recorded this, or on a machine without a machine id, have none).
    pub process: Option<Holder>,
}

/// The holding process, precisely enough to tell that it is gone: a pid alone can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The machine's id (`/etc/machine-id`).
    pub machine: String,
    /// The boot's id (`/proc/sys/kernel/random/boot_id`): after a reboot every process of the
    /// previous boot is gone.
    pub boot: String,
    /// When the process started, in clock ticks after boot (`/proc/<pid>/stat`, field 22).
    pub start: u64,
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

    /// Whether the holder is known to be gone, so that its lock may be taken over before it
    /// expires: it ran on `here`'s machine, and either that machine has rebooted since or
    /// `alive(pid, start)` says no process with its pid and start time exists (a reused pid
    /// has another start time). A record from another machine, or without a [`Holder`], is
    /// never abandoned: only its expiry frees it.
    #[must_use]
    pub fn is_abandoned(&self, here: &Holder, alive: impl FnOnce(u32, u64) -> bool) -> bool {
        match &self.process {
            Some(holder) if holder.machine == here.machine => {
                holder.boot != here.boot || !alive(self.pid, holder.start)
            }
            _ => false,
        }
    }

    /// The object body.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "owner={}\nhost={}\npid={}\nacquired={}\nexpires={}\n",
            self.owner, self.host, self.pid, self.acquired, self.expires
        );
        if let Some(holder) = &self.process {
            let _ = write!(
                text,
                "machine={}\nboot={}\npid_start={}\n",
                holder.machine, holder.boot, holder.start
            );
        }
        text
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
            // All three or none; a record with a torn or partial holder has none.
            process: match (field("machine"), field("boot"), number("pid_start")) {
                (Ok(machine), Ok(boot), Ok(start)) if !machine.is_empty() && !boot.is_empty() => {
                    Some(Holder {
                        machine: machine.to_owned(),
                        boot: boot.to_owned(),
                        start,
                    })
                }
                _ => None,
            },
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
            process: None,
        }
    }

    fn here() -> Holder {
        Holder {
            machine: "m1".into(),
            boot: "b1".into(),
            start: 500,
        }
    }

    #[test]
    fn a_holder_round_trips_and_old_records_parse_without_one() {
        let r = LockRecord {
            process: Some(here()),
            ..record()
        };
        assert_eq!(LockRecord::parse(&r.to_text()).unwrap(), r);
        assert_eq!(
            LockRecord::parse(&record().to_text()).unwrap().process,
            None
        );
        let partial = format!("{}machine=m1\npid_start=5\n", record().to_text());
        assert_eq!(LockRecord::parse(&partial).unwrap().process, None);
    }

    #[test]
    fn only_a_gone_holder_on_this_machine_is_abandoned() {
        let on = |holder: Holder| LockRecord {
            process: Some(holder),
            ..record()
        };
        let alive = |pid: u32, start: u64| pid == 4242 && start == 500;
        // Alive, same pid and start time: held.
        assert!(!on(here()).is_abandoned(&here(), alive));
        // The pid was reused by a process started later: the holder is gone.
        let reused = Holder {
            start: 400,
            ..here()
        };
        assert!(on(reused).is_abandoned(&here(), alive));
        // No such process.
        assert!(on(here()).is_abandoned(&here(), |_, _| false));
        // The machine rebooted since: gone, whatever runs under that pid now.
        let before_reboot = Holder {
            boot: "b0".into(),
            ..here()
        };
        assert!(on(before_reboot).is_abandoned(&here(), |_, _| true));
        // Another machine, or no holder recorded: only expiry frees it.
        let elsewhere = Holder {
            machine: "m2".into(),
            ..here()
        };
        assert!(!on(elsewhere).is_abandoned(&here(), |_, _| false));
        assert!(!record().is_abandoned(&here(), |_, _| false));
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
